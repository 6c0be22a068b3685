"""Command-line interface. Only parses arguments and calls the public API; every physics decision
lives in the library. Errors from bad input are printed as one line (exit code 2), never a traceback."""
from __future__ import annotations

import argparse
from dataclasses import replace
import re
import sys
from pathlib import Path
import warnings

from phonjax.longrange.strategies import modes as _modes
from phonjax.checks import USER_ERRORS
from phonjax.predict import SUPERCELL_RULES


def _supercell(values):
    if values is None:
        return None
    if len(values) == 1:
        return int(values[0])
    import numpy as np
    v = np.array(values, dtype=int)
    return v if len(values) == 3 else v.reshape(3, 3)


class _SupercellAction(argparse.Action):
    """``--supercell``: 1, 3 or 9 integers, else a usage error."""

    def __call__(self, parser, namespace, values, option_string=None):
        if len(values) not in (1, 3, 9):
            parser.error(f"argument {option_string}: takes 1, 3 or 9 integers (N, N1 N2 N3 or a 3x3 matrix), "
                         f"got {len(values)}")
        setattr(namespace, self.dest, values)


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {v}")
        return v
    parse.__name__ = f"integer >= {low}"
    return parse


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


def _key_value(text: str) -> str:
    if "=" not in text or not text.split("=", 1)[0].strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return text


def _add_lr_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--born", type=Path, help="phonopy BORN file or QE ph.x output with Z* and ε∞")
    p.add_argument("--lr", choices=("auto", *_modes()), default="auto",
                   help="long-range strategy (auto with Born data, by where the force constants came from: "
                        "recip-auto for an ML model, ewald for a short-range model, gonze for phonopy/DFT force "
                        "constants; no Born data → none)")
    p.add_argument("--ewald-lambda", type=_positive_float, default=None, help="Ewald Λ (1/Å) for recip/ewald/gonze; recip-auto fits its own")
    p.add_argument("--leak-region", default=None, help="ewald-leak region: 'sphere:R' (Å) or 'box:N N N'")
    p.add_argument("--lo-projection", action="store_true", help="apply the correction only to polar optical modes")
    p.add_argument("--q-direction", type=float, nargs=3, default=None,
                   help="direction of approach to Γ for the non-analytic term, in reduced coordinates of the "
                        "reciprocal lattice like q (phonopy's convention; default 1 0 0)")
    p.add_argument("--npoints", type=_int_at_least(2), default=101, help="q-points per path segment")
    p.add_argument("--reference", type=Path, default=None, help="phonopy band.yaml to overlay and compare with")
    p.add_argument("--out", type=Path, default=Path("out"), help="output directory")


def _add_cache_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-compile-cache", action="store_true",
                   help="do not use the persistent XLA compilation cache ($PHONJAX_COMPILE_CACHE or "
                        "~/.cache/phonjax/xla; PHONJAX_NO_COMPILE_CACHE=1 also disables it)")


#: file suffixes that may hold several frames (read fully to count them; other files are one structure)
MULTI_FRAME = (".xyz", ".extxyz", ".traj", ".json", ".db")


def _predict(args) -> int | None:
    from phonjax.predict import predict
    from phonjax.predict_many import expand_structures, predict_many

    options = dict(lr=args.lr, ewald_lambda=args.ewald_lambda, leak_region=args.leak_region,
                   lo_projection=args.lo_projection, q_direction=args.q_direction, npoints=args.npoints,
                   reference=args.reference, symmetry=not args.no_symmetry,
                   allow_small_supercell=args.allow_small_supercell, edge_chunk=args.edge_chunk,
                   supercell_rule=args.supercell_rule, primitive=not args.no_primitive)
    one = len(args.structure) == 1 and not args.structure[0].is_dir()
    items = None if one and args.structure[0].suffix.lower() not in MULTI_FRAME else expand_structures(args.structure)
    if items is None or (one and len(items) == 1):
        result = predict(args.structure[0], model=args.model, supercell=_supercell(args.supercell), born=args.born,
                         out_dir=args.out, **options)
        print(result.summary_text())
        return None
    if not items:
        raise ValueError("no structure files in " + ", ".join(map(str, args.structure)))
    res = predict_many(items, args.model, _supercell(args.supercell), born=args.born, out_dir=args.out, **options)
    print(f"{len(res.records)} structures: {res.count('ok')} done, {res.count('skipped')} skipped (finished "
          f"earlier), {res.count('failed')} failed; per-structure results in {res.out_dir}/<name>/, "
          f"all in {res.out_dir}/summary.jsonl")
    return 1 if res.count("failed") else None


def _bands(args) -> None:
    from phonjax.predict import bands_from_phonopy

    result = bands_from_phonopy(args.phonopy, born=args.born, lr=args.lr, ewald_lambda=args.ewald_lambda,
                                leak_region=args.leak_region, lo_projection=args.lo_projection,
                                q_direction=args.q_direction, npoints=args.npoints, reference=args.reference,
                                out_dir=args.out)
    print(result.summary_text())


def _convert(args) -> None:
    try:
        if args.kind == "nequip":
            from phonjax.models import converter

            convert_nequip = converter("nequip")

            if args.src is None or args.out is None:
                raise ValueError("usage: phonjax convert nequip SRC --out DIR")
            if args.modal is not None:
                raise ValueError("--modal is for multi-fidelity SevenNet checkpoints, not nequip models")
            model = convert_nequip(args.src, args.out, dtype=args.dtype, overwrite=args.overwrite)
        else:
            from phonjax.models import converter

            convert_sevennet = converter("sevennet")

            if args.out is None:
                from phonjax.defaults import default_model_dir
                args.out = default_model_dir()
            model = convert_sevennet(args.src, args.out, dtype=args.dtype or "float32", overwrite=args.overwrite,
                                     modal=args.modal)
    except FileExistsError:
        raise ValueError(f"{args.out} exists and is not empty; pass --overwrite to replace it") from None
    print(f"wrote {args.out} ({model.describe() if hasattr(model, 'describe') else type(model).__name__})")


_CONVERT_HELP = """Sources: a nequip package (.nequip.zip from `nequip-package build`), a nequip Lightning checkpoint (.ckpt) or a
SevenNet checkpoint (.pth, or a name of one shipped with the sevenn package: 7net-0, 7net-0_22May2024, 7net-l3i5,
7net-mf-0; default: the default model, 7net-l3i5). A multi-fidelity SevenNet (7net-mf-0) is converted at one
fidelity, --modal (default: the checkpoint's own, PBE for 7net-mf-0).

Safety: a torch package (.nequip.zip) runs its own bundled Python code when it is loaded — phonjax cannot prevent
that. Convert only packages from sources you trust. Checkpoints (.ckpt, .pth) are read weights-only: a file that
would need to run code to load, or whose model config names anything but nequip's model builders, is refused."""


def _dataset(args) -> int:
    from phonjax.dataset import build_dataset, load_dataset_config

    cfg = load_dataset_config(args.config, overrides=args.set)
    result = build_dataset(cfg, workers=args.workers, resume=not args.no_resume, scheduler=args.scheduler)
    print(result.summary())
    return 0 if result.ok else 1


def _dfpt(args) -> None:
    from phonjax.dataset import load_dfpt_config, run_dfpt

    cfg = load_dfpt_config(args.config, overrides=args.set)
    if args.workers is not None or args.scheduler is not None:  # either one means: split the q-points
        cfg = replace(cfg, split_q=True, workers=args.workers or cfg.workers,
                      scheduler=args.scheduler if args.scheduler is not None else cfg.scheduler)
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
    result = finetune(cfg, resume=args.resume, overwrite=args.overwrite)
    print(result)


def _compare(args) -> None:
    from phonjax.compare import compare_bands

    print(compare_bands(args.prediction, args.reference).summary())
    if args.plot is not None:
        from phonjax.plot import plot_band_comparison

        plot_band_comparison(args.prediction, args.reference, args.plot)
        print(f"wrote {args.plot}")


def _add_qe_commands(sub) -> None:
    """The Quantum ESPRESSO subcommands: dataset, dfpt, born."""
    p = sub.add_parser("dataset", help="QE dataset of rattled supercells (resumable; exit status 1 when "
                                       "samples failed)")
    p.add_argument("config", type=Path)
    p.add_argument("--workers", type=_int_at_least(1), default=1)
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the samples on this Dask scheduler (e.g. tcp://host:8786) instead of a local cluster; "
                        "a dask-jobqueue cluster (SLURM, PBS, ...) is set in the config's scheduler: block")
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", type=_key_value)
    p.set_defaults(func=_dataset)

    p = sub.add_parser("dfpt", help="QE DFPT reference: Z*, ε∞ (BORN) and band.yaml")
    p.add_argument("structure", type=Path)
    p.add_argument("--config", type=Path, default=Path("configs/dfpt_lif.yaml"))
    p.add_argument("--out", type=Path, default=Path("out/dfpt"))
    p.add_argument("--workers", type=_int_at_least(1), default=None,
                   help="run the irreducible q-points as N concurrent ph.x (one Dask task each; split_q)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the q-points on this Dask scheduler (e.g. tcp://host:8786; split_q); a dask-jobqueue "
                        "cluster is set in the config's scheduler: block")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", type=_key_value)
    p.set_defaults(func=_dfpt)

    p = sub.add_parser("born", help="ε∞ and Z* alone (Γ-only QE DFPT: epsil, zeu) → phonopy BORN file")
    p.add_argument("structure", type=Path)
    p.add_argument("--config", type=Path, default=Path("configs/dfpt_lif.yaml"),
                   help="a dfpt config (pw settings, relax, epsil_kpts); q-grid settings are ignored")
    p.add_argument("--out", type=Path, default=Path("out/born"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", type=_key_value)
    p.set_defaults(func=_born)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="phonjax", description="Phonons from NequIP-family potentials in JAX")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="force constants by autodiff → dispersion of a structure")
    p.add_argument("structure", type=Path, nargs="+",
                   help="structure file(s) ASE reads (primitive cell preferred); several files, a directory or a "
                        "multi-frame file run one job per structure into --out/<name>/ with --out/summary.jsonl "
                        "(resumable: finished structures are skipped); --born may then be a directory of "
                        "<name>.BORN files")
    p.add_argument("--model", type=Path, default=None,
                   help="phonjax model directory (default: the default model's cache, SevenNet-l3i5)")
    p.add_argument("--supercell", nargs="+", type=int, default=None, action=_SupercellAction,
                   help="N, N N N or 9 integers, over the cell as given (default: smallest N1×N2×N3 of the primitive "
                        "cell by --supercell-rule)")
    p.add_argument("--no-primitive", action="store_true",
                   help="keep a non-primitive (conventional) cell as given (default: reduce it to its primitive "
                        "cell with a note, as phonopy's primitive_matrix='auto')")
    p.add_argument("--no-symmetry", action="store_true", help="compute all 3·n_prim Hessian rows")
    p.add_argument("--allow-small-supercell", action="store_true",
                   help="accept a supercell narrower than the model's cutoff sphere (force constants then alias)")
    p.add_argument("--supercell-rule", choices=SUPERCELL_RULES, default="auto",
                   help="without --supercell: smallest N1×N2×N3 whose widths reach the model's receptive field "
                        "(layers·r_max) or its cutoff sphere (2·r_max); auto (default): cutoff where --lr resolves "
                        "to recip-auto (a model with Born data), else receptive")
    p.add_argument("--edge-chunk", type=_int_at_least(0), default=None,
                   help="edges per rematerialised message chunk (0: none; default: automatic by graph size) — "
                        "memory-lean force constants of large supercells")
    _add_lr_options(p)
    _add_cache_option(p)
    p.set_defaults(func=_predict)

    p = sub.add_parser("bands", help="dispersion from external force constants (phonopy)")
    p.add_argument("--phonopy", type=Path, required=True, help="phonopy_params.yaml (or phonopy_disp.yaml)")
    _add_lr_options(p)
    _add_cache_option(p)
    p.set_defaults(func=_bands)

    p = sub.add_parser("convert", help="convert torch weights to a phonjax model directory",
                       description="Convert torch nequip/SevenNet weights to a phonjax model directory.",
                       epilog=_CONVERT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=("nequip", "sevennet"))
    p.add_argument("src", nargs="?", type=Path, default=None,
                   help=".nequip.zip (runs its own code: trusted sources only) / .ckpt / SevenNet .pth, or a "
                        "pretrained SevenNet name: 7net-l3i5 (default), 7net-0, 7net-0_22May2024, 7net-mf-0")
    p.add_argument("out_pos", nargs="?", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None, help="output model directory")
    p.add_argument("--dtype", choices=("float32", "float64"), default=None, help="network dtype (default: source's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing, non-empty output directory")
    p.add_argument("--modal", default=None, metavar="FIDELITY",
                   help="multi-fidelity SevenNet only: the fidelity to convert (7net-mf-0: PBE (default) or R2SCAN)")
    p.set_defaults(func=_convert)

    _add_qe_commands(sub)

    p = sub.add_parser("finetune", help="finetune a phonjax model on an extxyz dataset")
    p.add_argument("config", type=Path)
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest intact checkpoint in out_dir (bit-for-bit)")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh, removing a previous run's checkpoints, metrics and model from out_dir")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", type=_key_value)
    _add_cache_option(p)
    p.set_defaults(func=_finetune)

    p = sub.add_parser("compare", help="error metrics of a band.yaml against a reference band.yaml")
    p.add_argument("prediction", type=Path)
    p.add_argument("reference", type=Path)
    p.add_argument("--plot", type=Path, default=None, help="write an overlay plot (PNG/PDF)")
    p.set_defaults(func=_compare)
    return ap


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line on stderr, above the progress bar (``phonjax: note:`` for input notes)."""
    from tqdm import tqdm
    from phonjax.checks import InputNote

    kind = "note" if issubclass(category, InputNote) else "warning"
    text = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
    tqdm.write(f"phonjax: {kind}: {text}", file=sys.stderr)


def _cli_words(msg: str, parser: argparse.ArgumentParser) -> str:
    """The library's ``name=True`` / ``name=...`` advice in an error message, as the command-line flag."""
    flags = {}
    for sub in parser._subparsers._group_actions[0].choices.values() if parser._subparsers else ():
        for a in sub._actions:
            if a.option_strings:
                flags.setdefault(a.dest, a.option_strings[-1])
    return re.sub(r"\b([a-z_]+)=(?:True|\.\.\.)", lambda m: flags.get(m.group(1), m.group(0)), msg)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "out_pos", None) is not None and args.out is None:
        args.out = args.out_pos
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            if hasattr(args, "no_compile_cache") and not args.no_compile_cache:
                from phonjax.compile_cache import enable_compile_cache
                enable_compile_cache()
            rc = args.func(args)  # None, or a command's own status (dataset: 1 when samples failed)
        except USER_ERRORS as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            print(f"phonjax: error: {_cli_words(msg, parser)}", file=sys.stderr)
            return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
