"""phonopy's example DFT data (../shared/data/phonopy-examples) in phonjax's layout, shared by the long-range
tests: the phonopy object, our supercell of its primitive cell, its force constants with the supercell atoms in
our order, and the Born data."""
from __future__ import annotations

from pathlib import Path

from phonjax.io.born import read_born
from phonjax.io.phonopy import from_phonopy


def load_example(directory: Path):
    """(phonopy, Supercell, fc (n_prim, N_s, 3, 3) eV/Å² in our atom order, Born) of an example folder; the
    reordering is :func:`phonjax.io.phonopy.from_phonopy`'s."""
    import phonopy

    d = Path(directory)
    ph = phonopy.load(d / "phonopy_disp.yaml", force_sets_filename=d / "FORCE_SETS", born_filename=d / "BORN",
                      is_compact_fc=True)
    fco = from_phonopy(ph, is_nac=False)
    return ph, fco.supercell, fco.fc, read_born(d / "BORN", fco.primitive)
