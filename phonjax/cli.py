"""Command-line interface. Only parses arguments and calls the public API; every physics decision
lives in the library. Errors from bad input are printed as one line (exit code 2), never a traceback."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from phonjax.longrange.strategies import MODES as _MODES
from phonjax.predict import SUPERCELL_RULES

LR_MODES = ("auto", *_MODES)


def _supercell(values):
    if values is None:
        return None
    if len(values) == 1:
        return int(values[0])
    if len(values) in (3, 9):
        import numpy as np
        v = np.array(values, dtype=int)
        return v if len(values) == 3 else v.reshape(3, 3)
    raise argparse.ArgumentTypeError("--supercell takes 1, 3 or 9 integers")


def _add_lr_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--born", type=Path, help="phonopy BORN file or QE ph.x output with Z* and ε∞")
    p.add_argument("--lr", choices=LR_MODES, default="auto",
                   help="long-range strategy (auto with Born data: predict → ewald for short-range models, "
                        "recip-auto for other ML models; bands (DFT force constants) → gonze; no Born data → none)")
    p.add_argument("--ewald-lambda", type=float, default=None, help="Ewald Λ (1/Å) for recip/ewald/gonze; recip-auto fits its own")
    p.add_argument("--leak-region", default=None, help="ewald-leak region: 'sphere:R' (Å) or 'box:N N N'")
    p.add_argument("--lo-projection", action="store_true", help="apply the correction only to polar optical modes")
    p.add_argument("--q-direction", type=float, nargs=3, default=None, help="q̂ (Cartesian) for the NA term at Γ")
    p.add_argument("--npoints", type=int, default=101, help="q-points per path segment")
    p.add_argument("--reference", type=Path, default=None, help="phonopy band.yaml to overlay and compare with")
    p.add_argument("--out", type=Path, default=Path("out"), help="output directory")


def _predict(args) -> None:
    from phonjax.predict import predict

    result = predict(args.structure, model=args.model, supercell=_supercell(args.supercell), born=args.born,
                     lr=args.lr, ewald_lambda=args.ewald_lambda, leak_region=args.leak_region,
                     lo_projection=args.lo_projection, q_direction=args.q_direction, npoints=args.npoints,
                     reference=args.reference, symmetry=not args.no_symmetry, out_dir=args.out,
                     allow_small_supercell=args.allow_small_supercell, edge_chunk=args.edge_chunk,
                     supercell_rule=args.supercell_rule)
    print(result.summary_text())


def _bands(args) -> None:
    from phonjax.predict import bands_from_phonopy

    result = bands_from_phonopy(args.phonopy, born=args.born, lr=args.lr, ewald_lambda=args.ewald_lambda,
                                leak_region=args.leak_region, lo_projection=args.lo_projection,
                                q_direction=args.q_direction, npoints=args.npoints, reference=args.reference,
                                out_dir=args.out)
    print(result.summary_text())


def _convert(args) -> None:
    if args.kind == "nequip":
        from convert.nequip import convert_nequip

        if args.src is None or args.out is None:
            raise ValueError("usage: phonjax convert nequip SRC --out DIR")
        model = convert_nequip(args.src, args.out, dtype=args.dtype, overwrite=args.overwrite)
    else:
        from convert.sevennet import convert_sevennet

        if args.out is None:
            from phonjax.defaults import default_model_dir
            args.out = default_model_dir()
        model = convert_sevennet(args.src, args.out, dtype=args.dtype or "float32", overwrite=args.overwrite)
    print(f"wrote {args.out} ({model.describe() if hasattr(model, 'describe') else type(model).__name__})")


def _dataset(args) -> None:
    from phonjax.dataset import build_dataset, load_dataset_config

    cfg = load_dataset_config(args.config, overrides=args.set)
    result = build_dataset(cfg, workers=args.workers, resume=not args.no_resume)
    print(result)


def _dfpt(args) -> None:
    from phonjax.dataset import load_dfpt_config, run_dfpt

    cfg = load_dfpt_config(args.config, overrides=args.set)
    result = run_dfpt(args.structure, cfg, args.out)
    print(f"DFPT reference written to {args.out}/ (band.yaml, BORN, dfpt.json); ε∞ diagonal "
          f"{' '.join(f'{x:.3f}' for x in result.epsilon.diagonal())}, optical Γ (THz) "
          f"{' '.join(f'{x:.2f}' for x in result.gamma_optical.ravel())}")


def _born(args) -> None:
    from phonjax.dataset import load_dfpt_config, run_born

    cfg = load_dfpt_config(args.config, overrides=args.set)
    d = run_born(args.structure, cfg, args.out)
    zdiag = ", ".join(" ".join(f"{x:+.3f}" for x in z.diagonal()) for z in d.zstar)
    print(f"BORN written to {args.out}/BORN: ε∞ diagonal {' '.join(f'{x:.3f}' for x in d.epsilon.diagonal())}; "
          f"Z* diagonals {zdiag}; neutrality violation {d.violation:.4f} e; "
          f"{sum(d.seconds.values()):.0f} s")


def _finetune(args) -> None:
    from phonjax.train import finetune, load_finetune_config

    cfg = load_finetune_config(args.config, overrides=args.set)
    result = finetune(cfg, resume=args.resume)
    print(result)


def _compare(args) -> None:
    from phonjax.compare import compare_bands

    print(compare_bands(args.prediction, args.reference).summary())
    if args.plot is not None:
        from phonjax.plot import plot_band_comparison

        plot_band_comparison(args.prediction, args.reference, args.plot)
        print(f"wrote {args.plot}")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="phonjax", description="Phonons from NequIP-family potentials in JAX")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="force constants by autodiff → dispersion of a structure")
    p.add_argument("structure", type=Path, help="any structure file ASE reads (primitive cell preferred)")
    p.add_argument("--model", type=Path, default=None, help="phonjax model directory (default: SevenNet-0 cache)")
    p.add_argument("--supercell", nargs="+", type=int, default=None,
                   help="N, N N N or 9 integers (default: smallest N³ whose width covers 2·r_cut)")
    p.add_argument("--no-symmetry", action="store_true", help="compute all 3·n_prim Hessian rows")
    p.add_argument("--allow-small-supercell", action="store_true",
                   help="accept a supercell narrower than the model's cutoff sphere (force constants then alias)")
    p.add_argument("--supercell-rule", choices=SUPERCELL_RULES, default="receptive",
                   help="without --supercell: smallest N³ whose width reaches the model's receptive field "
                        "(layers·r_max, default) or its cutoff sphere (2·r_max, cheaper)")
    p.add_argument("--edge-chunk", type=int, default=None,
                   help="edges per rematerialised message chunk (0: none; default: automatic by graph size) — "
                        "memory-lean force constants of large supercells")
    _add_lr_options(p)
    p.set_defaults(func=_predict)

    p = sub.add_parser("bands", help="dispersion from external force constants (phonopy)")
    p.add_argument("--phonopy", type=Path, required=True, help="phonopy_params.yaml (or phonopy_disp.yaml)")
    _add_lr_options(p)
    p.set_defaults(func=_bands)

    p = sub.add_parser("convert", help="convert torch weights to a phonjax model directory")
    p.add_argument("kind", choices=("nequip", "sevennet"))
    p.add_argument("src", nargs="?", type=Path, default=None, help=".nequip.zip / .ckpt / SevenNet .pth")
    p.add_argument("out_pos", nargs="?", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None, help="output model directory")
    p.add_argument("--dtype", choices=("float32", "float64"), default=None, help="network dtype (default: source's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.set_defaults(func=_convert)

    p = sub.add_parser("dataset", help="QE dataset of rattled supercells (resumable)")
    p.add_argument("config", type=Path)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=_dataset)

    p = sub.add_parser("dfpt", help="QE DFPT reference: Z*, ε∞ (BORN) and band.yaml")
    p.add_argument("structure", type=Path)
    p.add_argument("--config", type=Path, default=Path("configs/dfpt_lif.yaml"))
    p.add_argument("--out", type=Path, default=Path("out/dfpt"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=_dfpt)

    p = sub.add_parser("born", help="ε∞ and Z* alone (Γ-only QE DFPT: epsil, zeu) → phonopy BORN file")
    p.add_argument("structure", type=Path)
    p.add_argument("--config", type=Path, default=Path("configs/dfpt_lif.yaml"),
                   help="a dfpt config (pw settings, relax, epsil_kpts); q-grid settings are ignored")
    p.add_argument("--out", type=Path, default=Path("out/born"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=_born)

    p = sub.add_parser("finetune", help="finetune a phonjax model on an extxyz dataset")
    p.add_argument("config", type=Path)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=_finetune)

    p = sub.add_parser("compare", help="error metrics of a band.yaml against a reference band.yaml")
    p.add_argument("prediction", type=Path)
    p.add_argument("reference", type=Path)
    p.add_argument("--plot", type=Path, default=None, help="write an overlay plot (PNG/PDF)")
    p.set_defaults(func=_compare)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "out_pos", None) is not None and args.out is None:
        args.out = args.out_pos
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"phonjax: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
