"""Compare every ``--lr`` mode on phonopy's LiF data (DFT force constants, 2×2×2 conventional supercell).

    .venv/bin/python benchmarks/longrange_modes.py [--out DIR] [--points 30]

Path Γ–X–W–K–Γ–L of the FCC primitive cell; at Γ the q direction comes from the neighbouring path segment.
Modes: none, na, ewald, ewald-leak (sphere 3.0 Å = first shell, and box 1×1×1), recip (default Λ), gonze
(reference), wang, gonze with LO projection. Λ study: recip, ewald and gonze at Λ = 0.1 … 1.0 (phonopy
convention) at (¼,¼,¼), X and L.
Writes OUT/longrange_modes.json (frequencies, RMS/max deviation from gonze in THz, Λ spreads) and
OUT/longrange_modes.png (bands per mode, gonze dashed), OUT/longrange_lambda.png (frequencies vs Λ).
Runtime ≈ 1 min on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

import phonjax  # noqa: F401  (float64)
from phonjax.io.born import read_born
from phonjax.io.phonopy import from_phonopy
from phonjax.longrange.strategies import make_correction
from phonjax.dynmat import correction_frequencies
from phonjax.longrange.calibrate import lambda_scan
from phonjax.fourier import ws_images

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT.parent / "shared" / "data" / "phonopy-examples" / "LiF-nosym"

PATH = [("Γ", [0, 0, 0]), ("X", [0.5, 0, 0.5]), ("W", [0.5, 0.25, 0.75]), ("K", [0.375, 0.375, 0.75]),
        ("Γ", [0, 0, 0]), ("L", [0.5, 0.5, 0.5])]


def load_lif(data: Path):
    import phonopy
    from phonopy import Phonopy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ph1 = phonopy.load(supercell_matrix=[2, 2, 2], primitive_matrix="P", unitcell_filename=data / "POSCAR-unitcell",
                           force_sets_filename=data / "FORCE_SETS", is_nac=False, is_symmetry=False,
                           symmetrize_fc=False, is_compact_fc=False)
        ph = Phonopy(ph1.unitcell, supercell_matrix=[2, 2, 2], primitive_matrix="F")
        ph.force_constants = ph1.force_constants
    fco = from_phonopy(ph, is_nac=False, symmetrize_fc=False)  # our atom order (phonopy's p2s rows)
    sc, fc, prim = fco.supercell, fco.fc, fco.primitive
    born = read_born(data / "BORN", prim, unitcell=ph.unitcell)
    return sc, fc, born


def band_path(n: int, cell):
    segs, labels, x, dirs = [], [], [], []
    rec_t = np.linalg.inv(cell).T
    pos = 0.0
    for (la, a), (lb, b) in zip(PATH[:-1], PATH[1:]):
        a, b = np.array(a, float), np.array(b, float)
        t = np.linspace(0, 1, n)
        q = a + t[:, None] * (b - a)
        length = np.linalg.norm((b - a) @ rec_t)
        segs.append(q)
        x.append(pos + t * length)
        dirs.append((b - a) @ rec_t)
        labels.append((pos, la))
        pos += length
    labels.append((pos, PATH[-1][0]))
    return segs, np.array(x), labels, dirs


def frequencies_on_path(corr, sc, segs, dirs, images):
    out = []
    for q, d in zip(segs, dirs):
        f = correction_frequencies(corr, sc, q, None, images=images)
        g0 = np.linalg.norm(q @ np.linalg.inv(sc.primitive.cell).T, axis=1) < 1e-8
        if np.any(g0):  # Γ: direction along the segment (towards the neighbouring point)
            f[g0] = correction_frequencies(corr, sc, q[g0], d, images=images)
        out.append(f)
    return np.array(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--points", type=int, default=30)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    sc, fc, born = load_lif(args.data)
    segs, x, labels, dirs = band_path(args.points, sc.primitive.cell)
    images = ws_images(sc)
    modes = {
        "none": dict(lr="none"), "na": dict(lr="na"), "ewald": dict(lr="ewald"),
        "ewald-leak sphere:3.0": dict(lr="ewald-leak", leak_region="sphere:3.0"),
        "ewald-leak box:1 1 1": dict(lr="ewald-leak", leak_region="box:1 1 1"),
        "recip": dict(lr="recip"), "gonze": dict(lr="gonze"), "wang": dict(lr="wang"),
        "gonze+LO-projection": dict(lr="gonze", lo_projection=True),
    }
    freqs = {}
    for name, kw in modes.items():
        lr = kw.pop("lr")
        corr = make_correction(lr, None if lr == "none" else born, sc, fc, **kw)
        freqs[name] = frequencies_on_path(corr, sc, segs, dirs, images)
    ref = freqs["gonze"]
    summary = {}
    for name, f in freqs.items():
        d = np.abs(f - ref)
        summary[name] = {"rms_vs_gonze_THz": float(np.sqrt(np.mean(d ** 2))), "max_vs_gonze_THz": float(d.max()),
                         "min_frequency_THz": float(f.min()), "LO_Gamma_THz": float(f[0, 0, -1]),
                         "TO_Gamma_THz": float(f[0, 0, 3])}
    lams = [0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0]
    qs = np.array([[0.25, 0.25, 0.25], [0.5, 0, 0.5], [0.5, 0.5, 0.5]])
    scan = lambda_scan(sc, born, lams, qs, fc=fc, modes=("recip", "ewald", "gonze"))
    lam_study = {m: {"lambdas": lams, "max_dev_vs_gonze_default_THz": scan.deviation(m).tolist(),
                     "spread_THz": scan.spread(m),
                     "frequencies_THz": scan.frequencies[m].tolist()} for m in scan.frequencies}
    res = {"material": "LiF (phonopy example LiF-nosym, VASP force sets, 2x2x2 conventional = 64 atoms)",
           "born": {"zstar_xx": born.zstar[:, 0, 0].tolist(), "epsilon_xx": float(born.epsilon[0, 0]),
                    "factor": born.factor, "neutrality_correction": born.neutrality_correction},
           "path": [p[0] for p in PATH], "summary": summary, "lambda_study": lam_study,
           "frequencies_THz": {k: v.tolist() for k, v in freqs.items()}, "runtime_s": time.time() - t0}
    (args.out / "longrange_modes.json").write_text(json.dumps(res, indent=1))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(freqs)
    fig, axes = plt.subplots(3, 3, figsize=(13, 11), sharey=True)
    for ax, name in zip(axes.ravel(), names):
        for s in range(len(segs)):
            ax.plot(x[s], ref[s], "k--", lw=0.8)
            ax.plot(x[s], freqs[name][s], "C3", lw=1.1)
        for pos, la in labels:
            ax.axvline(pos, color="0.7", lw=0.5)
        ax.set_xticks([p for p, _ in labels], [la for _, la in labels])
        ax.set_title(f"{name}  (RMS vs gonze {summary[name]['rms_vs_gonze_THz']:.2f} THz)", fontsize=9)
        ax.axhline(0, color="0.5", lw=0.5)
    axes[0, 0].set_ylabel("THz")
    axes[1, 0].set_ylabel("THz")
    fig.suptitle("LiF (phonopy DFT force constants): --lr modes (red) vs gonze (dashed)")
    fig.tight_layout()
    fig.savefig(args.out / "longrange_modes.png", dpi=110)
    # Λ study (the seed's Figure 4): frequencies at (¼,¼,¼), X, L against Λ for recip / ewald / gonze
    fig2, ax2 = plt.subplots(1, 3, figsize=(12, 3.8), sharey=True)
    for k, (ax, lab) in enumerate(zip(ax2, ["(¼,¼,¼)", "X", "L"])):
        for m, col in (("recip", "C0"), ("ewald", "C2"), ("gonze", "C3")):
            f = scan.frequencies[m][:, k]
            for b in range(f.shape[1]):
                ax.plot(lams, f[:, b], "o-", color=col, ms=3, lw=0.8, label=m if b == 0 else None)
        for v in scan.reference[k]:
            ax.axhline(v, color="k", ls=":", lw=0.6)
        ax.set_xscale("log")
        ax.set_xlabel("Λ (1/Å, phonopy convention)")
        ax.set_title(lab)
    ax2[0].set_ylabel("THz")
    ax2[0].legend(fontsize=8)
    fig2.suptitle("LiF: frequencies vs Ewald Λ (dotted: gonze at phonopy's default Λ)")
    fig2.tight_layout()
    fig2.savefig(args.out / "longrange_lambda.png", dpi=110)
    print(json.dumps(summary, indent=1))
    print({m: round(lam_study[m]["spread_THz"], 5) for m in lam_study})
    print(f"wrote {args.out}/longrange_modes.json, .png in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
