"""phonopy's example DFT data (../shared/data/phonopy-examples) in phonjax's layout, shared by the long-range
tests: the phonopy object, our supercell of its primitive cell, its compact force constants with the supercell
atoms in our order, the Born data and the atom map (ours → phonopy's)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from phonjax.born import read_born
from phonjax.structure import Crystal, make_supercell


def load_example(directory: Path):
    """(phonopy, Supercell, fc (n_prim, N_s, 3, 3) eV/Å² in our atom order, Born, map) of an example folder."""
    import phonopy

    d = Path(directory)
    ph = phonopy.load(d / "phonopy_disp.yaml", force_sets_filename=d / "FORCE_SETS", born_filename=d / "BORN",
                      is_compact_fc=True)
    prim = Crystal.coerce(ph.primitive)
    M = np.rint(ph.supercell.cell @ np.linalg.inv(prim.cell)).astype(int)
    sc = make_supercell(prim, M)
    ours = sc.crystal.positions @ np.linalg.inv(ph.supercell.cell)
    dd = ours[:, None, :] - ph.supercell.scaled_positions[None]
    dd -= np.round(dd)
    mp = np.argmin(np.linalg.norm(dd @ ph.supercell.cell, axis=-1), axis=1)
    return ph, sc, ph.force_constants[:, mp], read_born(d / "BORN", prim), mp
