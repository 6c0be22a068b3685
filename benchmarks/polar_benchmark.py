"""Polar-crystal benchmark against QE DFPT (issue 20 deliver 3): the pretrained default model with every
``--lr`` mode, and today's practice (phonopy finite displacements with SevenNet-0's torch calculator + phonopy's
Gonze–Lee NAC), on every crystal with a DFPT reference.

    nice .venv/bin/python benchmarks/polar_benchmark.py [--crystal SiC ...] [--supercell N] [--mesh 8]

Crystals: every ``examples/<X>/dfpt`` with band.yaml and BORN (structure: the relaxed cell the reference was
computed on, ``dfpt/POSCAR``, else ``<X>/POSCAR``); a directory without band.yaml yet (a DFPT run in progress)
is listed as skipped. Force constants (phonjax: symmetry-reduced Hessian-vector products in a child process;
FD: phonopy + sevenn) are computed once per (model, structure, supercell) and cached in ``--cache``; every mode
is then evaluated from the cache. Supercell: the cutoff rule (2·r_max, the CLI's default with Born data) unless
``--supercell``; the receptive-field N is recorded (compared in benchmarks/lo_supercell.py). Metrics: benchmarks/_polar_eval.py;
thermal at 300 K on a ``--mesh``³ Γ-centred mesh (compared with DFPT interpolated there by QE's matdyn.x) and on
DFPT's own q-grid (compared with DFPT's frequencies there, benchmarks/_polar_dfpt.py). Writes ``reports/polar.md``, ``reports/polar.json``, ``reports/figures/polar.png``.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import sys
import time

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lif import ROOT, gamma_directions, load_inputs  # noqa: E402
from _lif_fcstore import FcStore, log, sc_value  # noqa: E402
from _polar_eval import evaluate, thermal_at  # noqa: E402

#: The method label of today's practice in the results.
FD_LABEL = "phonopy FD + GL NAC"
#: Options of modes that need one (as benchmarks/lif_accuracy.py's study).
MODE_OPTIONS = {"ewald-leak": {"leak_region": "sphere:5"}}


def find_crystals(examples: Path, names=None) -> tuple[list, list]:
    """([(name, dfpt dir, structure path)], [(name, reason)]) of examples/<X>/ (``names``: only those); a crystal
    without dfpt/band.yaml + BORN (a DFPT run not finished or not started) is skipped with the reason."""
    ok, skipped = [], []
    for x in sorted(p for p in examples.iterdir() if p.is_dir()):
        name, d = x.name, x / "dfpt"
        if names and name not in names:
            continue
        structure = d / "POSCAR" if (d / "POSCAR").is_file() else x / "POSCAR"
        missing = [f for f in ("band.yaml", "BORN") if not (d / f).is_file()]
        if not structure.is_file():
            missing.append("POSCAR")
        if missing:
            skipped.append((name, f"no {', '.join(missing)} in {os.path.relpath(d, ROOT)} yet (DFPT "
                                  f"{'running or unfinished' if d.is_dir() else 'not started'})"))
        else:
            ok.append((name, d, structure))
    for n in set(names or ()) - {c[0] for c in ok} - {s[0] for s in skipped}:
        raise SystemExit(f"--crystal {n}: no {examples / n}")
    return ok, skipped


def supercells(prim, minfo: dict, override: int | None) -> dict:
    """{'used', 'rule', 'cutoff_rule', 'cli_default'} supercell per rule: N (N³) or [N1, N2, N3]."""
    from phonjax.predict import default_supercell

    cut = sc_value(default_supercell(prim, minfo["r_max"], rule="cutoff"))
    rec = sc_value(default_supercell(prim, minfo["r_max"], rule="receptive",
                                     receptive_field=minfo["receptive_field_A"]))
    used = override or cut
    return {"used": used, "rule": "--supercell" if override else "cutoff (2·r_max)", "cutoff_rule": cut,
            "cli_default_receptive": rec}


def phonjax_freq_fn(fcobj, mode: str):
    """(freq_fn(q, directions), resolved mode, Λ or None): the correction is built once per mode."""
    from phonjax.dynmat import phonons
    from phonjax.longrange.spec import LongRange

    spec = LongRange(mode, None, None, MODE_OPTIONS.get(mode, {}).get("leak_region"), False, None).resolved(fcobj)
    corr = spec.correction(fcobj)

    def freq_fn(q, directions):
        return np.asarray(phonons(fcobj, np.asarray(q, dtype=np.float64), corr, q_direction=directions))

    return freq_fn, spec.mode, (None if corr is None else corr.lam)


def model_fc(store, minfo, prim, born, structure: Path, n: int):
    """(ForceConstants with Born data, provenance 'model'; meta) from the cache or a fresh computation."""
    from phonjax.force_constants import ForceConstants
    from phonjax.structure import make_supercell, supercell_matrix

    fc, meta = store.get(minfo, structure, n)
    if fc is None:
        raise RuntimeError(f"force constants N={n}: {meta.get('reason')}")
    return ForceConstants(make_supercell(prim, supercell_matrix(n)), fc, born, provenance="model"), meta


def run_crystal(name, d: Path, structure: Path, *, minfo, store, modes, mesh: int, supercell=None,
                fd: bool = True) -> dict:
    """Every method's metrics on one crystal (see the module docstring)."""
    from _polar_dfpt import grid_frequencies, mesh_frequencies
    from phonjax.thermal import mesh_qpoints

    prim, born, ref = load_inputs(structure, d / "BORN", d / "band.yaml")
    dirs = gamma_directions(ref, prim.cell)
    sc = supercells(prim, minfo, supercell)
    n = sc["used"]
    grid_q, grid_f = grid_frequencies(d, prim)
    dfpt_grid = thermal_at(grid_f)
    mesh_q = mesh_qpoints((mesh,) * 3)
    mesh_f = mesh_frequencies(d, mesh_q)
    dfpt_mesh = None if mesh_f is None else thermal_at(mesh_f)
    out = {"name": name, "structure": os.path.relpath(structure, ROOT), "n_atoms_primitive": prim.n_atoms,
           "supercell": sc, "mesh": [mesh] * 3, "dfpt_grid": {"n_q": len(grid_q), "thermal": dfpt_grid},
           "dfpt_mesh": {"thermal": dfpt_mesh, "source": "matdyn.x on the q2r force constants (asr crystal)"},
           "dfpt": _dfpt_info(d), "methods": {}}
    fcobj, meta = model_fc(store, minfo, prim, born, structure, n)
    out["phonjax_fc"] = meta
    for mode in modes:
        t = time.perf_counter()
        try:
            fn, resolved, lam = phonjax_freq_fn(fcobj, mode)
            res = evaluate(fn, ref, dirs, mesh_q, grid_q, dfpt_grid, dfpt_mesh)
        except Exception as e:  # a mode that cannot run on this input is recorded, not fatal
            out["methods"][mode] = {"error": f"{type(e).__name__}: {e}"}
            log(f"  {name} {mode}: {out['methods'][mode]['error']}")
            continue
        res.update(resolved=resolved, lambda_=lam, options=MODE_OPTIONS.get(mode), time_s=time.perf_counter() - t)
        out["methods"][mode] = res
        log(f"  {name} {mode} ({resolved}): RMSE {res['metrics']['rmse_thz']:.3f} THz, "
            f"LO shape {res['metrics']['lo_shape_error_thz']:.3f} THz")
    if fd:
        from _polar_fd import fd_freq_fn, fd_phonopy
        ph, fmeta = fd_phonopy(prim, structure, d / "BORN", n, store.cache)
        res = evaluate(fd_freq_fn(ph, ref), ref, dirs, mesh_q, grid_q, dfpt_grid, dfpt_mesh)
        res.update(resolved="phonopy gonze", fd=fmeta)
        out["methods"][FD_LABEL] = res
        log(f"  {name} FD: RMSE {res['metrics']['rmse_thz']:.3f} THz")
    out["_ref"] = ref
    return out


def _dfpt_info(d: Path) -> dict:
    p = d / "dfpt.json"
    if not p.is_file():
        return {}
    j = json.loads(p.read_text())
    keep = ("timings_s", "epsilon_inf", "gamma_optical_thz")
    return {**{k: j.get(k) for k in keep}, "config": {k: (j.get("config") or {}).get(k)
                                                      for k in ("qgrid", "epsil_kpts", "asr", "pw")}}


def parse_args(argv=None):
    from phonjax.longrange.strategies import modes

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crystal", action="append", default=None, help="only these (repeatable)")
    ap.add_argument("--supercell", type=int, default=None, help="N for every crystal (default: cutoff rule)")
    ap.add_argument("--mesh", type=int, default=8, help="thermal q-mesh N×N×N (Γ-centred)")
    ap.add_argument("--modes", default=",".join((*modes(), "auto")), help="comma-separated --lr modes")
    ap.add_argument("--no-fd", action="store_true", help="skip today's practice (phonopy + sevenn)")
    ap.add_argument("--examples", type=Path, default=ROOT / "examples")
    ap.add_argument("--out", type=Path, default=ROOT / "reports")
    ap.add_argument("--cache", type=Path, default=ROOT / "out" / "polar" / "cache")
    ap.add_argument("--in-process", action="store_true", help="force constants in this process (no watcher)")
    ap.add_argument("--max-fc-seconds", type=float, default=2400.0)
    ap.add_argument("--max-rss-gib", type=float, default=10.0)
    ap.add_argument("--markdown-only", action="store_true", help="rewrite polar.md from polar.json (no run)")
    ap.add_argument("--model", type=Path, default=None,
                    help="a phonjax model directory instead of the default model; see polar_models.py")
    ap.add_argument("--model-name", default=None, help="its name in the results (default: the directory's)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    t0, load0 = time.time(), os.getloadavg()
    from lif_accuracy import ensure_model, model_info
    from phonjax.defaults import default_model_dir
    from _polar_report import write_figure, write_markdown
    from lif_accuracy import jsonable

    if args.markdown_only:
        (args.out / "polar.md").write_text(write_markdown(json.loads((args.out / "polar.json").read_text())))
        return 0
    crystals, skipped = find_crystals(args.examples, args.crystal)
    if not crystals:
        raise SystemExit("no crystal with a DFPT reference (examples/<X>/dfpt/band.yaml + BORN)")
    if args.model is None:
        minfo = model_info("pretrained", ensure_model("pretrained", default_model_dir()))
    else:
        minfo = model_info(args.model_name or args.model.name, ensure_model("given", args.model))
    store = FcStore(args.cache, max_rss_gib=args.max_rss_gib, max_seconds=args.max_fc_seconds,
                    in_process=args.in_process, retry_infeasible=False)
    modes = [m for m in args.modes.split(",") if m]
    results = {}
    for name, why in skipped:
        log(f"skipped {name}: {why}")
    for name, d, structure in crystals:
        log(f"{name}: {os.path.relpath(structure, ROOT)}")
        results[name] = run_crystal(name, d, structure, minfo=minfo, store=store, modes=modes, mesh=args.mesh,
                                    supercell=args.supercell, fd=not args.no_fd)
    refs = {k: v.pop("_ref") for k, v in results.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    fig = write_figure(results, refs, args.out / "figures" / "polar.png")
    run = {"wall_s": time.time() - t0, "load_avg_start": load0, "load_avg_end": os.getloadavg(),
           "cpu_count": os.cpu_count(), "fc_computed_now": store.computed_now, "fc_from_cache": store.from_cache,
           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "argv": sys.argv[1:] if argv is None else argv}
    result = {"model": minfo, "crystals": results, "skipped": dict(skipped), "modes": modes, "run": run,
              "figure": os.path.relpath(fig, args.out)}
    (args.out / "polar.json").write_text(json.dumps(jsonable(result), indent=1, default=str) + "\n")
    (args.out / "polar.md").write_text(write_markdown(result))
    log(f"wrote {args.out / 'polar.md'}, polar.json, {fig.name} in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
