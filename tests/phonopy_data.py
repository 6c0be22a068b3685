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


def load_lif_unsymmetrized(directory: Path):
    """phonopy's LiF example as a phonopy object without symmetrisation: force constants from the 2×2×2
    conventional FORCE_SETS as they are, the fcc primitive cell, Born charges and ε∞ symmetrised by phonopy
    (phonopy.load would symmetrise the force constants)."""
    import warnings

    from phonopy import Phonopy, load
    from phonopy.file_IO import parse_BORN
    from phonopy.structure.symmetry import symmetrize_borns_and_epsilon

    d = Path(directory)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ph1 = load(supercell_matrix=[2, 2, 2], primitive_matrix="P", unitcell_filename=d / "POSCAR-unitcell",
                   force_sets_filename=d / "FORCE_SETS", is_nac=False, is_symmetry=False, symmetrize_fc=False,
                   is_compact_fc=False)
        ph = Phonopy(ph1.unitcell, supercell_matrix=[2, 2, 2], primitive_matrix="F")
        ph.force_constants = ph1.force_constants
        nac = parse_BORN(ph.unitcell, filename=d / "BORN", is_symmetry=False)
        zb, eps = symmetrize_borns_and_epsilon(nac["born"], nac["dielectric"], ph.unitcell, primitive=ph.primitive)
        ph.nac_params = {"born": zb, "dielectric": eps, "factor": nac["factor"]}
    return ph
