"""Numbers before/after the phonon-engine renovation (issue 16): frequencies of phonopy's NaCl / MgO / LiF DFT
force constants in every long-range mode (explicit q-points, Γ with a direction, the default band path) and a
small random-model ``predict`` (lr auto and gonze), saved to an .npz; with ``--compare OLD.npz`` the max
difference per entry is printed.

    PYTHONPATH=$PWD python benchmarks/renovation_parity.py --out /work/notes/engine-before.npz
    PYTHONPATH=$PWD python benchmarks/renovation_parity.py --out after.npz --compare /work/notes/engine-before.npz

The Γ direction is fixed in Cartesian coordinates here and passed in whatever basis the engine takes
(Cartesian before the renovation, reduced coordinates of the reciprocal lattice after).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
import tempfile

import numpy as np

import phonjax  # noqa: F401  (x64)

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "phonopy-examples"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from phonopy_data import load_lif_unsymmetrized  # noqa: E402  (shared with the long-range tests)
MODES = ("none", "na", "ewald", "ewald-leak", "recip", "gonze", "wang", "recip-auto")
QS = np.array([[0.1, 0.0, 0.1], [0.25, 0.25, 0.25], [0.5, 0.0, 0.5], [0.5, 0.5, 0.5], [0.13, -0.21, 0.37],
               [0.0, 0.0, 0.0]])
D_CART = np.array([1.0, 0.3, 0.2])


def _reduced_directions() -> bool:
    from phonjax.longrange import __all__ as names
    return "LongRange" in names


def _qdir(prim, d_cart):
    """The Cartesian direction d_cart in the basis the engine takes."""
    return prim.cell @ d_cart if _reduced_directions() else d_cart


def _load(name):
    from phonjax.io.phonopy import from_phonopy
    d = EXAMPLES / name
    if name != "LiF-nosym":
        return from_phonopy(d / "phonopy_disp.yaml")
    return from_phonopy(load_lif_unsymmetrized(d))


def dft_entries(out: dict) -> None:
    for name in ("NaCl", "MgO", "LiF-nosym"):
        fc = _load(name)
        qd = _qdir(fc.primitive, D_CART)
        for mode in MODES:
            kw = {"leak_region": "sphere:3.0"} if mode == "ewald-leak" else {}
            out[f"{name}/{mode}/q"] = fc.frequencies(QS, lr=mode, **kw)
            out[f"{name}/{mode}/gamma_dir"] = fc.frequencies([[0, 0, 0]], lr=mode, q_direction=qd, **kw)
        out[f"{name}/gonze-lo/q"] = fc.frequencies(QS, lr="gonze", lo_projection=True)
        out[f"{name}/recip-0.2/q"] = fc.frequencies(QS, lr="recip", ewald_lambda=0.2)
        out[f"{name}/auto/q"] = fc.frequencies(QS, q_direction=qd)
        out[f"{name}/gonze/band"] = fc.band_structure(npoints=11, lr="gonze").frequencies
        out[f"{name}/auto/band"] = fc.band_structure(npoints=11).frequencies
        out[f"{name}/qasr-gonze/q"] = fc.frequencies(QS, lr="gonze", asr=True)
        print(name, "done", flush=True)


def model_entries(out: dict) -> None:
    from phonjax.io.born import read_born
    from phonjax.models.nequip.model import Model
    from phonjax.io.structure import read_structure as load_structure
    from phonjax.predict import predict
    from phonjax.models.nequip.train_adapter import nequip_arch_config
    prim = load_structure(ROOT / "examples" / "LiF" / "POSCAR")
    born = read_born(ROOT / "examples" / "LiF" / "BORN", prim)
    m = Model.init(nequip_arch_config(("Li", "F"), r_max=3.0, l_max=1, num_layers=2, num_features=4,
                                      radial_mlp_width=8, num_bessels=4), seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        for lr in ("auto", "gonze", "none"):
            res = predict(prim, m, 2, born=born, lr=lr, out_dir=Path(tmp) / lr, progress=False, npoints=9,
                          allow_small_supercell=True)
            out[f"model/{lr}/band"] = res.band.frequencies
            out[f"model/{lr}/gamma"] = res.gamma_frequencies
            print("predict", lr, "->", res.lr, flush=True)


#: |f| (THz) below which a mode counts as acoustic at Γ: there f = √λ magnifies rounding of λ (≈1e-16 relative)
#: to ~1e-7 THz, so those modes are compared through λ ∝ sign(f)·f² instead.
ACOUSTIC_THZ = 0.01


def compare(old, new) -> float:
    """Print per entry: max |Δf| (all modes), max |Δf| (modes with |f| ≥ ACOUSTIC_THZ) and max |Δ(sign f · f²)|
    (THz², all modes); return the worst of the second."""
    worst = 0.0
    for k in sorted(set(old) | set(new)):
        if k not in old or k not in new:
            print(f"{k:32s} missing on one side")
            continue
        a, b = np.asarray(old[k]), np.asarray(new[k])
        big = (np.abs(a) >= ACOUSTIC_THZ) & (np.abs(b) >= ACOUSTIC_THZ)
        d_all = float(np.abs(a - b).max())
        d_big = float(np.abs(a - b)[big].max()) if big.any() else 0.0
        d_sq = float(np.abs(np.sign(a) * a ** 2 - np.sign(b) * b ** 2).max())
        worst = max(worst, d_big)
        print(f"{k:32s} max |Δf| {d_all:.1e}  non-acoustic {d_big:.1e} THz  |Δ(f|f|)| {d_sq:.1e} THz²")
    print(f"overall max |Δf| over modes with |f| >= {ACOUSTIC_THZ} THz: {worst:.3e} THz")
    return worst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--compare", type=Path, default=None)
    ap.add_argument("--compare-only", action="store_true", help="compare the existing --out file, compute nothing")
    a = ap.parse_args()
    if not a.compare_only:
        out: dict = {}
        dft_entries(out)
        model_entries(out)
        np.savez(a.out, **out)
    if a.compare is not None:
        new = np.load(a.out)
        old = np.load(a.compare)
        compare({k: old[k] for k in old.files}, {k: new[k] for k in new.files})


if __name__ == "__main__":
    main()
