"""Run a ``phonjax`` CLI command in a fresh Python process and report its wall time and JAX compilation tally
(:class:`phonjax.testing.CompileStats`: XLA compilations, seconds in them, persistent-cache hits/misses).

Used by ``bench_compile_cache.py`` (CPU) and ``gpu_check.py`` (GPU): run the same command twice with the same
empty cache directory → cold and warm process. No torch here.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys
import time

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from phonjax.testing import CompileStats
stats = CompileStats().start()
from phonjax.cli import main
rc = main(sys.argv[1:])
print("COMPILESTATS " + json.dumps(dict(stats.as_dict(), rc=rc, in_process_s=time.perf_counter() - t0)), flush=True)
sys.exit(rc)
"""


def run_cli(args: list[str], *, cache_dir: Path | None, env_extra: dict | None = None,
            timeout: float = 1800) -> dict:
    """``phonjax ARGS`` in a child process (cache in ``cache_dir``; None: ``--no-compile-cache`` semantics via
    PHONJAX_NO_COMPILE_CACHE=1). Returns wall_s (process start to exit), the child's CompileStats, rc and the
    last lines of its output; compile_fraction = backend_compile_s / wall_s."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # a GPU parent may hold memory already
    if cache_dir is None:
        env["PHONJAX_NO_COMPILE_CACHE"] = "1"
    else:
        env.pop("PHONJAX_NO_COMPILE_CACHE", None)
        env["PHONJAX_COMPILE_CACHE"] = str(cache_dir)
    env.update(env_extra or {})
    t = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, "-c", _CHILD, *map(str, args)], env=env, capture_output=True, text=True,
                           timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"wall_s": time.perf_counter() - t, "rc": "timeout", "args": list(map(str, args))}
    wall = time.perf_counter() - t
    stats = {}
    for line in p.stdout.splitlines():
        if line.startswith("COMPILESTATS "):
            stats = json.loads(line[len("COMPILESTATS "):])
    out = {"wall_s": round(wall, 3), "rc": p.returncode, "args": list(map(str, args)), **stats,
           "tail": (p.stdout + p.stderr).strip().splitlines()[-4:]}
    if stats:
        out["compile_fraction"] = round(stats["backend_compile_s"] / wall, 4)
        out["compile_and_trace_fraction"] = round((stats["backend_compile_s"] + stats["trace_lower_s"]) / wall, 4)
    return out


def cold_warm(args: list[str], cache_dir: Path, *, env_extra: dict | None = None, timeout: float = 1800,
              log=print) -> dict:
    """The same command twice with one (empty) cache directory: {"cold": ..., "warm": ...}."""
    res = {}
    for tag in ("cold", "warm"):
        log(f"  phonjax {' '.join(map(str, args))} [{tag}] ...")
        res[tag] = run_cli(args, cache_dir=cache_dir, env_extra=env_extra, timeout=timeout)
        r = res[tag]
        log(f"    {tag}: wall {r.get('wall_s')} s, rc {r.get('rc')}, compiles {r.get('backend_compiles')}, "
            f"compile {r.get('backend_compile_s')} s, cache hits {r.get('cache_hits')} misses {r.get('cache_misses')}")
    return res
