"""End-to-end accuracy report on LiF against QE DFPT (issue 9 deliver 2+3, issue 10 deliver 4's table/figure).

    .venv/bin/python benchmarks/lif_accuracy.py [--model NAME=DIR ...] [--quick] [--out reports]

Regenerates ``reports/lif.md``, ``reports/lif.json`` (every number in the .md) and ``reports/figures/*.png``:
a. setup, data and wall-clock per stage; b. the seed's Figure 2 (prediction supercells, no long-range
correction); c. the seed's Figures 3–4 (every ``--lr`` mode) per model; d. the issue-9 table (per-branch
RMSE/MAE, TO/LO(Γ), acoustic error near Γ, imaginary modes, Λ-sensitivity) with the targets; e. convergence with
the prediction supercell vs the receptive-field and the default rule; f. a second rock salt (examples/MgO or
examples/NaCl with dfpt/band.yaml + BORN) when present; g. targets vs reached.

Models (``--model NAME=DIR``, repeatable): default ``pretrained`` = the CLI's default model directory (converted from the
installed sevenn when missing) plus every ``out/lif/<name>/model`` (training metrics from
``out/lif/<name>/metrics.json``). Force constants (symmetry-reduced Hessian-vector products, chunk_size 1) are
computed once per (model weights, structure, supercell) in a child process watched for peak memory and time
(``--max-rss-gib``, ``--max-fc-seconds``) and cached in ``--cache`` (npz + json); a supercell that exceeds a
limit is recorded (per architecture) with the measured peak and not tried again for that architecture unless
``--retry-infeasible``. The long-range modes are evaluated from the cached force constants (cheap).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
from pathlib import Path
import sys
import time

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lif import (EX, IMAG_THZ, NEAR_GAMMA_FRACTION, ROOT, TARGETS, accuracy_metrics,  # noqa: E402
                  gamma_directions, load_inputs, path_frequencies, segment_slices)
from _lif_fcstore import FcStore, log, sha_file  # noqa: E402
from _lif_markdown import LAMBDA_SCALES, write_markdown  # noqa: E402

KNOWN_RUNS = ("finetuned", "finetuned_fc", "shortrange", "random_init")
#: Λ values (phonopy convention) of the seed's recip study.
SEED_LAMBDAS = (0.30, 0.31, 0.37, 1.0)
#: Modes that take ewald_lambda (the Λ-sensitivity is measured for these).
LAMBDA_MODES = ("recip", "gonze", "ewald", "ewald-leak")


# ------------------------------------------------------------------------------------------------ modes
def mode_specs(extra_modes=(), lambdas=SEED_LAMBDAS) -> list[tuple[str, dict]]:
    """(label, kwargs of ForceConstants.frequencies) for every mode of the study."""
    specs = [("none", dict(lr="none")), ("na", dict(lr="na")), ("ewald", dict(lr="ewald")),
             ("ewald-leak sphere:5", dict(lr="ewald-leak", leak_region="sphere:5")),
             ("ewald-leak box:3", dict(lr="ewald-leak", leak_region="box:3 3 3")),
             ("recip", dict(lr="recip"))]
    specs += [(f"recip Λ={lam:.2f}", dict(lr="recip", ewald_lambda=lam)) for lam in lambdas]
    specs += [("gonze", dict(lr="gonze")), ("wang", dict(lr="wang"))]
    specs += [(m, dict(lr=m)) for m in extra_modes]
    return specs


def extra_modes() -> tuple[str, ...]:
    """Modes in phonjax.longrange.strategies.MODES beyond the seed's (e.g. a range-matched one)."""
    from phonjax.longrange.strategies import MODES
    known = {"none", "na", "ewald", "ewald-leak", "recip", "gonze", "wang"}
    return tuple(m for m in MODES if m not in known)


# ------------------------------------------------------------------------------------------------ models
def _sha_dir(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(path)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def default_model_dirs() -> dict:
    from phonjax.defaults import default_model_dir
    out = {"pretrained": default_model_dir()}  # the CLI's (and `make demo`'s) model cache
    lif = ROOT / "out" / "lif"
    names = [n for n in KNOWN_RUNS if (lif / n / "model" / "config.yaml").is_file()]
    if lif.is_dir():
        names += sorted(p.name for p in lif.iterdir() if p.name not in KNOWN_RUNS
                        and (p / "model" / "config.yaml").is_file())
    out.update({n: lif / n / "model" for n in names})
    return out


def material_model_dirs(material: str, root: Path) -> dict:
    """{name: <root>/<material lower>/<name>/model} of the models finetuned on a second material."""
    base = root / material.lower()
    if not base.is_dir():
        return {}
    return {p.name: p / "model" for p in sorted(base.iterdir()) if (p / "model" / "config.yaml").is_file()}


def ensure_model(name: str, path: Path) -> Path:
    if (path / "config.yaml").is_file():
        return path
    if name == "pretrained":
        log(f"converting the default model into {path}")
        os.environ["PHONJAX_MODEL"] = str(path)
        from phonjax.defaults import default_model
        default_model()
        return path
    raise SystemExit(f"model {name}: no config.yaml in {path}")


def model_info(name: str, path: Path) -> dict:
    from phonjax.models import load_model
    m = load_model(path)
    cfg = m.config
    info = {"name": name, "dir": str(path), "sha256": _sha_dir(path), "arch_sha256": sha_file(path / "config.yaml"),
            "r_max": float(m.r_max), "num_layers": int(cfg.num_layers), "dtype": m.dtype,
            "n_params": m.n_params(), "receptive_field_A": float(cfg.num_layers * m.r_max)}
    try:
        from phonjax.longrange.dipole_labels import is_short_range
        info["short_range"] = bool(is_short_range(m.metadata))
    except ImportError:
        info["short_range"] = False
    from phonjax.longrange.policy import auto_mode  # what lr='auto' uses with Born data
    info["auto_mode"] = auto_mode("short-range-model" if info["short_range"] else "model", True)
    meta = path / "metadata.json"
    if meta.is_file():
        md = json.loads(meta.read_text())
        info["metadata"] = {k: md[k] for k in ("model_name", "source", "short_range", "level_of_theory") if k in md}
    run = path.parent
    if (run / "metrics.json").is_file() and path.name == "model":
        rows = json.loads((run / "metrics.json").read_text())
        rows = rows if isinstance(rows, list) else rows.get("history", [])
        tr = [r for r in rows if r.get("train_time_s") is not None]
        best = [r["valid_f_mae"] for r in rows if r.get("valid_f_mae") is not None]
        info["training"] = {"epochs": len(tr), "train_time_s": float(sum(r["train_time_s"] for r in tr)),
                            "structures_per_s": float(np.mean([r["structures_per_s"] for r in tr
                                                               if r.get("structures_per_s")] or [np.nan])),
                            "valid_f_mae_first_eV_A": best[0] if best else None,
                            "valid_f_mae_last_eV_A": best[-1] if best else None,
                            "valid_f_mae_best_eV_A": min(best) if best else None}
        if (run / "config.yaml").is_file():
            import yaml
            c = yaml.safe_load((run / "config.yaml").read_text())
            info["training"]["config"] = {"init_model": c.get("model"), "train": c.get("data", {}).get("train"),
                                          "fc_loss_weight": c.get("loss", {}).get("fc", {}).get("weight"),
                                          "max_epochs": c.get("training", {}).get("max_epochs")}
    return info


def fc_object(prim, born, n, fc):
    from phonjax.force_constants import ForceConstants
    from phonjax.structure import make_supercell, supercell_matrix
    return ForceConstants(make_supercell(prim, supercell_matrix(n)), fc, born)


# ------------------------------------------------------------------------------------------------ evaluation
def evaluate_modes(fcobj, ref, dirs, specs, *, lambda_scan=True) -> dict:
    """{label: {"freqs", "metrics", "lambda"...}} for every mode spec."""
    from phonjax.longrange.strategies import make_correction
    out = {}
    for label, kw in specs:
        t = time.perf_counter()
        try:
            f = path_frequencies(fcobj, ref, dirs, **kw)
        except Exception as e:  # a mode that needs more input (recorded, not fatal)
            out[label] = {"error": f"{type(e).__name__}: {e}"}
            log(f"  {label}: {out[label]['error']}")
            continue
        dt = time.perf_counter() - t
        res = {"freqs": f, "metrics": accuracy_metrics(f, ref), "time_s": dt, "kwargs": kw}
        lr = kw["lr"]
        if lambda_scan and "ewald_lambda" not in kw:
            if lr in ("none", "na", "wang"):
                res["lambda"] = {"spread_thz": 0.0, "note": "no Λ in this mode"}
            else:
                try:
                    opts = {k: v for k, v in kw.items() if k != "lr"}
                    lam0 = make_correction(lr, fcobj.born, fcobj.supercell, fcobj.fc, **opts).lam
                    if lam0 is None:
                        res["lambda"] = {"spread_thz": 0.0, "note": "no Λ in this mode"}
                    else:
                        fs = np.array([path_frequencies(fcobj, ref, dirs, **kw, ewald_lambda=s * lam0)
                                       for s in LAMBDA_SCALES])
                        fref = np.sort(ref.frequencies, 1)
                        res["lambda"] = {"lambda0": float(lam0), "scales": list(LAMBDA_SCALES),
                                         "spread_thz": float((fs.max(0) - fs.min(0)).max()),
                                         "rmse_thz": [float(np.sqrt(np.mean((np.sort(x, 1) - fref) ** 2)))
                                                      for x in fs]}
                except Exception as e:  # e.g. a mode whose Λ is chosen automatically and cannot be overridden
                    res["lambda"] = {"error": f"{type(e).__name__}: {e}"}
                    try:
                        corr = make_correction(lr, fcobj.born, fcobj.supercell, fcobj.fc,
                                               **{k: v for k, v in kw.items() if k != "lr"})
                        res["lambda"]["lambda_auto"] = None if corr.lam is None else float(corr.lam)
                        res["lambda"]["info"] = {k: v for k, v in corr.info.items()
                                                 if isinstance(v, (int, float, str, bool))}
                    except Exception:
                        pass
        out[label] = res
    return out


# ------------------------------------------------------------------------------------------------ report helpers


def jsonable(x):
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items() if k != "freqs"}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    return x


def supercell_rules(prim, minfo) -> dict:
    from phonjax.force_constants import supercell_width
    w = supercell_width(prim)
    r, L = minfo["r_max"], minfo["num_layers"]
    return {"primitive_width_A": w,
            "default_2rmax": int(math.ceil(2 * r / w - 1e-9)),
            "receptive_L_rmax": int(math.ceil(L * r / w - 1e-9)),
            "receptive_2L_rmax": int(math.ceil(2 * L * r / w - 1e-9))}


def second_materials(dirs=None):
    """[(name, directory)] of materials with POSCAR, BORN and dfpt/band.yaml: ``dirs`` or examples/MgO, NaCl."""
    cands = [Path(d) for d in dirs] if dirs else [ROOT / "examples" / n for n in ("MgO", "NaCl")]
    out = []
    for d in cands:
        if (d / "dfpt" / "band.yaml").is_file() and (d / "BORN").is_file() and (d / "POSCAR").is_file():
            out.append((d.name, d))
        elif dirs:
            raise SystemExit(f"--second-material {d}: needs POSCAR, BORN and dfpt/band.yaml")
    return out


# ------------------------------------------------------------------------------------------------ main
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=[], metavar="NAME=DIR",
                    help="model directory (repeatable); default: pretrained + every out/lif/<name>/model")
    ap.add_argument("--no-default-models", action="store_true", help="only the --model ones")
    ap.add_argument("--reference", type=Path, default=EX / "dfpt" / "band.yaml")
    ap.add_argument("--born", type=Path, default=EX / "BORN")
    ap.add_argument("--structure", type=Path, default=EX / "POSCAR")
    ap.add_argument("--out", type=Path, default=ROOT / "reports", help="lif.md, lif.json, figures/")
    ap.add_argument("--cache", type=Path, default=ROOT / "out" / "lif_report" / "cache")
    ap.add_argument("--quick", action="store_true", help="small supercells only (smoke test)")
    ap.add_argument("--fig2-supercells", type=int, nargs="+", default=[5, 9, 13])
    ap.add_argument("--fig2-models", default="pretrained,finetuned")
    ap.add_argument("--converge-models", default="pretrained,finetuned")
    ap.add_argument("--converge-min", type=int, default=3)
    ap.add_argument("--converge-tol", type=float, default=0.05, help="THz, for the recommended rule")
    ap.add_argument("--supercell", type=int, default=None,
                    help="prediction supercell N of the mode study (default: each model's cutoff rule, 2·r_max)")
    ap.add_argument("--max-rss-gib", type=float, default=12.0)
    ap.add_argument("--max-fc-seconds", type=float, default=900.0)
    ap.add_argument("--retry-infeasible", action="store_true")
    ap.add_argument("--in-process", action="store_true", help="no child process (no memory watch)")
    ap.add_argument("--no-second-material", action="store_true")
    ap.add_argument("--second-material", action="append", default=None, metavar="DIR",
                    help="material directory with POSCAR, BORN, dfpt/band.yaml (default: examples/MgO, NaCl)")
    ap.add_argument("--material-models", type=Path, default=ROOT / "out",
                    help="models finetuned on a second material: <DIR>/<material lower>/<name>/model")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.time()
    import phonjax  # noqa: F401
    from phonjax.predict import default_supercell

    if args.quick:
        args.fig2_supercells = [2, 3]
        args.converge_min = 2
        args.in_process = True
    prim, born, ref = load_inputs(args.structure, args.born, args.reference)
    dirs = gamma_directions(ref, prim.cell)
    models = {} if args.no_default_models else default_model_dirs()
    for spec in args.model:
        if "=" not in spec:
            raise SystemExit(f"--model expects NAME=DIR, got {spec!r}")
        k, v = spec.split("=", 1)
        models[k] = Path(v) if Path(v).is_absolute() else ROOT / v
    if not models:
        raise SystemExit("no models")
    minfos = {}
    for name, path in models.items():
        path = ensure_model(name, path)
        minfos[name] = model_info(name, path)
        log(f"model {name}: {path} (r_max {minfos[name]['r_max']} Å, {minfos[name]['num_layers']} layers, "
            f"{minfos[name]['dtype']})")
    store = FcStore(args.cache, max_rss_gib=args.max_rss_gib, max_seconds=args.max_fc_seconds,
                    in_process=args.in_process, retry_infeasible=args.retry_infeasible)
    specs = mode_specs(extra_modes(), lambdas=SEED_LAMBDAS[:1] if args.quick else SEED_LAMBDAS)
    figdir = args.out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    from _lif_figures import plot_convergence, plot_dispersion_panels

    result = {"inputs": {"structure": str(args.structure), "born": str(args.born), "reference": str(args.reference),
                         "n_qpoints": int(len(ref.qpoints)), "segment_nqpoint": list(ref.segment_nqpoint),
                         "labels": [list(x) for x in ref.labels]},
              "targets": TARGETS, "quick": args.quick, "models": minfos,
              "definitions": {"near_gamma_fraction": NEAR_GAMMA_FRACTION, "imaginary_below_thz": -IMAG_THZ,
                              "lambda_scales": LAMBDA_SCALES}}

    # -- main supercell per model and the mode study (c, d)
    main_n = {}
    for name, mi in minfos.items():
        n = args.supercell or int(default_supercell(prim, mi["r_max"], rule="cutoff")[0, 0])
        main_n[name] = min(n, 3) if args.quick else n
    modes_res, fc_meta = {}, {}
    for name, mi in minfos.items():
        n = main_n[name]
        fc, meta = store.get(mi, args.structure, n)
        if fc is None:
            log(f"model {name}: no force constants at N={n}: {meta['reason']}")
            modes_res[name] = {"error": meta}
            result.setdefault("mode_errors", {})[name] = {"n": n, **meta}
            continue
        fc_meta[name] = meta
        log(f"lr modes for {name} at N={n}")
        fco = fc_object(prim, born, n, fc)
        t = time.perf_counter()
        path_frequencies(fc_object(prim, born, n, fc), ref, dirs, lr=mi["auto_mode"])
        meta["bands_auto_s"] = time.perf_counter() - t
        meta["auto_mode"] = mi["auto_mode"]
        modes_res[name] = evaluate_modes(fco, ref, dirs, specs)
        result.setdefault("mode_study", {})[name] = {"n": n, "n_atoms": meta["n_atoms"], "fc": meta,
                                                    "modes": jsonable(modes_res[name])}
        panels = [(f"{lab}: RMSE {r['metrics']['rmse_thz']:.2f} THz" if "metrics" in r else f"{lab}: error",
                   {name: r["freqs"]} if "freqs" in r else {}) for lab, r in modes_res[name].items()]
        plot_dispersion_panels(ref, panels, figdir / f"lif_modes_{name}.png", ncols=4,
                               title=f"LiF, {name} force constants ({n}³ = {meta['n_atoms']} atoms) + DFPT Z*/ε∞, "
                                     "every --lr mode vs QE DFPT")

    # -- Figure 2 (b) and convergence (e)
    fig2_names = [m for m in args.fig2_models.split(",") if m in minfos]
    conv_names = [m for m in args.converge_models.split(",") if m in minfos]
    n_max = max(args.fig2_supercells)
    series = {}
    for name in dict.fromkeys(fig2_names + conv_names):
        ns = set(args.fig2_supercells) | {main_n[name]}
        if name in conv_names:
            ns |= set(range(args.converge_min, n_max + 1))
        series[name] = store.series(minfos[name], args.structure, ns)
    fig2 = {}
    for name in fig2_names:
        ok, fails = series[name]
        feas = sorted(ok)
        chosen = [n for n in args.fig2_supercells if n in ok]
        if len(chosen) < len(args.fig2_supercells):  # some requested ones not feasible: every computed one
            chosen = sorted(set(chosen) | {n for n in feas if n >= args.converge_min})
        curves, rows = {}, {}
        for n in sorted(chosen):
            fco = fc_object(prim, born, n, ok[n][0])
            f = path_frequencies(fco, ref, dirs, lr="none")
            m = accuracy_metrics(f, ref)
            rows[n] = {"n_atoms": ok[n][1]["n_atoms"], "fc_time_s": ok[n][1]["fc_time_s"],
                       "peak_rss_gib": ok[n][1].get("peak_rss_gib"), "metrics": m}
            curves[f"{n}³ ({ok[n][1]['n_atoms']} at.) RMSE {m['rmse_thz']:.2f}"] = f
        fig2[name] = {"supercells": rows, "not_feasible": {n: dict(fails[n], n_atoms=n ** 3 * prim.n_atoms)
                                                           for n in args.fig2_supercells if n in fails}}
        fig2[name]["_curves"] = curves
        pts = [(m["n_atoms"], m.get("peak_rss_gib"), m["fc_time_s"]) for _, m in ok.values()]
        pts = [p for p in pts if p[1] is not None and p[0] >= 50]
        if len(pts) >= 2:  # linear fits over the feasible supercells → the infeasible ones
            a = np.array(pts, dtype=float)
            mem = np.polyfit(a[:, 0], a[:, 1], 1)
            tim = np.polyfit(a[:, 0], a[:, 2], 1)
            fig2[name]["extrapolation"] = {
                "fit_points": pts, "rss_gib_per_atom": float(mem[0]), "rss_gib_offset": float(mem[1]),
                "time_s_per_atom": float(tim[0]), "time_s_offset": float(tim[1]),
                "estimates": {n: {"n_atoms": n ** 3 * prim.n_atoms,
                                  "peak_rss_gib": float(np.polyval(mem, n ** 3 * prim.n_atoms)),
                                  "fc_time_s": float(np.polyval(tim, n ** 3 * prim.n_atoms))}
                              for n in args.fig2_supercells if n not in ok}}
    if fig2:
        plot_dispersion_panels(ref, [(f"{k}, lr none", v["_curves"]) for k, v in fig2.items()],
                               figdir / "lif_fig2_supercells.png", ncols=2,
                               title="LiF: prediction supercell, no long-range correction, vs QE DFPT")
    result["fig2"] = jsonable({k: {kk: vv for kk, vv in v.items() if kk != "_curves"} for k, v in fig2.items()})

    conv = {}
    gi = 0
    xi = segment_slices(ref)[0].stop - 1  # X: end of the first segment (Γ–X)
    li = len(ref.qpoints) - 1  # L: path end
    for name in conv_names:
        ok, fails = series[name]
        ns = [n for n in sorted(ok) if n >= args.converge_min]
        if len(ns) < 2:
            continue
        fr = {n: path_frequencies(fc_object(prim, born, n, ok[n][0]), ref, dirs, lr="none") for n in ns}
        fg = {n: path_frequencies(fc_object(prim, born, n, ok[n][0]), ref, dirs, lr="gonze") for n in ns}
        am = minfos[name]["auto_mode"]
        fa = fg if am == "gonze" else {n: path_frequencies(fc_object(prim, born, n, ok[n][0]), ref, dirs, lr=am)
                                       for n in ns}
        big = fr[ns[-1]]
        rows = {}
        for n in ns:
            d = fr[n] - big
            rows[n] = {"n_atoms": ok[n][1]["n_atoms"], "width_A": n * supercell_rules(prim, minfos[name])["primitive_width_A"],
                       "fc_time_s": ok[n][1]["fc_time_s"], "peak_rss_gib": ok[n][1].get("peak_rss_gib"),
                       "gamma_thz": fr[n][gi].tolist(), "x_thz": fr[n][xi].tolist(), "l_thz": fr[n][li].tolist(),
                       "max_dev_gamma_thz": float(np.abs(d[gi]).max()), "max_dev_x_thz": float(np.abs(d[xi]).max()),
                       "max_dev_l_thz": float(np.abs(d[li]).max()),
                       "rmse_vs_largest_thz": float(np.sqrt(np.mean(d ** 2))),
                       "rmse_vs_dfpt_none_thz": accuracy_metrics(fr[n], ref)["rmse_thz"],
                       "rmse_vs_dfpt_gonze_thz": accuracy_metrics(fg[n], ref)["rmse_thz"],
                       "lo_rel_gonze": accuracy_metrics(fg[n], ref)["lo_rel"], "auto_mode": am,
                       "rmse_vs_dfpt_auto_thz": accuracy_metrics(fa[n], ref)["rmse_thz"],
                       "lo_gx_max_rel_auto": accuracy_metrics(fa[n], ref)["lo_first_segment_max_rel"]}
        rules = supercell_rules(prim, minfos[name])
        conv_n = next((n for n in ns[:-1] if max(rows[n]["rmse_vs_largest_thz"], rows[n]["max_dev_gamma_thz"],
                                                 rows[n]["max_dev_x_thz"], rows[n]["max_dev_l_thz"])
                       <= args.converge_tol), None)
        conv[name] = {"largest": ns[-1], "rows": rows, "rules": rules, "tol_thz": args.converge_tol,
                      "converged_n": conv_n, "not_feasible": fails,
                      "converged_width_over_rmax": None if conv_n is None else rows[conv_n]["width_A"] / minfos[name]["r_max"]}
    if conv:
        ser, xs = {}, sorted({n for c in conv.values() for n in c["rows"]})
        for name, c in conv.items():
            ser[f"{name}: path RMSE vs {c['largest']}³"] = [c["rows"].get(n, {}).get("rmse_vs_largest_thz", np.nan)
                                                          for n in xs]
            ser[f"{name}: max |Δ| at Γ, X, L"] = [max(c["rows"][n]["max_dev_gamma_thz"], c["rows"][n]["max_dev_x_thz"],
                                                      c["rows"][n]["max_dev_l_thz"]) if n in c["rows"] else np.nan
                                                  for n in xs]
        r0 = next(iter(conv.values()))["rules"]
        vl = {f"cutoff rule width ≥ 2·r_max: N={r0['default_2rmax']}": r0["default_2rmax"]}
        if r0["receptive_L_rmax"] <= max(xs) + 1:
            vl[f"receptive rule width ≥ L·r_max (predict default): N={r0['receptive_L_rmax']}"] = \
                r0["receptive_L_rmax"]
        largest = {n for c in conv.values() for n in [c["largest"]]}
        plot_convergence(xs, {k: [v if np.isfinite(v) and xs[i] not in largest else np.nan
                                  for i, v in enumerate(vals)] for k, vals in ser.items()},
                         figdir / "lif_convergence.png", xlabel="prediction supercell N (N³ primitive cells)",
                         ylabel="THz (lr none)", logy=True, vlines=vl, hline=args.converge_tol,
                         title="LiF: frequencies vs prediction supercell (relative to the largest computed)")
    result["convergence"] = jsonable(conv)

    # -- second material (f): pretrained + every model finetuned on that material (out/<material>/<name>/model)
    second = {}
    if (not args.quick or args.second_material) and not args.no_second_material:
        for mat, d in second_materials(args.second_material):
            p2, b2, r2 = load_inputs(d / "POSCAR", d / "BORN", d / "dfpt" / "band.yaml")
            dirs2 = gamma_directions(r2, p2.cell)
            base = minfos.get("pretrained") or next(iter(minfos.values()))
            mats = {base["name"]: base}
            for name, path in material_model_dirs(mat, args.material_models).items():
                mats[name] = model_info(name, path)
            second[mat] = {"reference": os.path.relpath(d / "dfpt" / "band.yaml", ROOT), "models": {}}
            auto_curves = {}
            for name, mi in mats.items():
                n = int(default_supercell(p2, mi["r_max"], rule="cutoff")[0, 0])
                fc, meta = store.get(mi, d / "POSCAR", n)
                if fc is None:
                    second[mat]["models"][name] = {"error": meta}
                    continue
                log(f"lr modes for {mat} {name} at N={n}")
                res = evaluate_modes(fc_object(p2, b2, n, fc), r2, dirs2, specs)
                second[mat]["models"][name] = {"n": n, "n_atoms": meta["n_atoms"], "fc": meta, "modes": res,
                                               "auto_mode": mi["auto_mode"], "short_range": mi["short_range"],
                                               "training": mi.get("training")}
                plot_dispersion_panels(r2, [(f"{lab}: RMSE {r['metrics']['rmse_thz']:.2f} THz", {name: r["freqs"]})
                                            for lab, r in res.items() if "metrics" in r],
                                       figdir / f"{mat.lower()}_modes_{name}.png", ncols=4,
                                       title=f"{mat}, {name} ({n}³ = {meta['n_atoms']} atoms), every --lr mode "
                                             "vs DFPT")
                r = res.get(mi["auto_mode"])
                if r and "metrics" in r:
                    auto_curves[f"{name}, {mi['auto_mode']}: RMSE {r['metrics']['rmse_thz']:.2f} THz"] = \
                        {name: r["freqs"]}
            if auto_curves:
                plot_dispersion_panels(r2, list(auto_curves.items()), figdir / f"{mat.lower()}_auto.png",
                                       ncols=len(auto_curves),
                                       title=f"{mat}: each model with its --lr auto mode vs QE DFPT")
    result["second_material"] = jsonable(second)

    # -- stage timings (a)
    ds = json.loads((EX / "dataset_small.json").read_text()) if (EX / "dataset_small.json").is_file() else {}
    dfpt = json.loads((EX / "dfpt" / "dfpt.json").read_text()) if (EX / "dfpt" / "dfpt.json").is_file() else {}
    result["setup"] = {"dataset": {k: ds.get(k) for k in ("n_samples_written", "mean_seconds_per_sample")},
                       "dataset_pw": (ds.get("config") or {}).get("pw"),
                       "dataset_config": {k: (ds.get("config") or {}).get(k) for k in
                                          ("supercell", "position_sigma", "strain_sigma", "seed")},
                       "dfpt_timings_s": dfpt.get("timings_s"), "dfpt_config": dfpt.get("config"),
                       "dfpt_epsilon": dfpt.get("epsilon_inf"), "dfpt_gamma_optical_thz": dfpt.get("gamma_optical_thz")}
    result["run"] = {"wall_s": time.time() - t_start, "fc_computed_now": store.computed_now,
                     "fc_from_cache": store.from_cache, "load_avg_end": os.getloadavg(),
                     "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "argv": sys.argv[1:] if argv is None else argv}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lif.json").write_text(json.dumps(jsonable(result), indent=1, default=str) + "\n")
    md = write_markdown(result, modes_res, specs, args, main_n)
    (args.out / "lif.md").write_text(md)
    log(f"wrote {args.out / 'lif.md'}, lif.json, figures/ in {time.time() - t_start:.0f} s")
    return 0


# ------------------------------------------------------------------------------------------------ markdown


if __name__ == "__main__":
    sys.exit(main())
