"""Force constants for benchmarks/lif_accuracy.py: computed once per (model weights, structure, N) in a child
process watched for peak memory and time, cached as npz + json; supercells that exceed a limit are recorded.

Child process: ``python benchmarks/_lif_fcstore.py MODEL_DIR N OUT_NPZ STRUCTURE``.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
import subprocess
import sys
import time

import numpy as np


def log(*a):
    print(f"[lif {time.strftime('%H:%M:%S')}]", *a, flush=True)


def sha_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def sc_tag(n) -> str:
    """A supercell N (int) or (N1, N2, N3) as a file-name tag: '4' for 4³ (also (4, 4, 4)), '4x4x2' otherwise."""
    v = np.atleast_1d(np.asarray(n, dtype=np.int64))
    return str(int(v[0])) if np.all(v == v[0]) else "x".join(str(int(x)) for x in v)


def sc_value(tag_or_matrix):
    """N (int) for an N³ supercell, else [N1, N2, N3]: from a tag of :func:`sc_tag` or a diagonal 3×3 matrix."""
    if isinstance(tag_or_matrix, str):
        v = [int(x) for x in tag_or_matrix.split("x")]
    else:
        v = [int(x) for x in np.diag(np.asarray(tag_or_matrix))]
    return v[0] if len(set(v)) == 1 else v


def sc_text(n) -> str:
    """'4³' or '4×4×2'."""
    t = sc_tag(n)
    return f"{t}³" if "x" not in t else t.replace("x", "×")


def _worker(model_dir, n, out_npz, structure):
    """Child process: force constants of structure at N×N×N (or N1×N2×N3), saved to out_npz."""
    import ase.io
    import phonjax  # noqa: F401
    from phonjax.force_constants import force_constants
    from phonjax.models import load_model
    from phonjax.structure import Crystal

    t = time.perf_counter()
    m = load_model(model_dir)
    prim = Crystal.from_ase(ase.io.read(str(structure)))
    t_load = time.perf_counter() - t
    t = time.perf_counter()
    fc = force_constants(m, prim, n, symmetry=True, chunk_size=1, allow_small_supercell=True)
    t_fc = time.perf_counter() - t
    tmp = Path(str(out_npz) + ".tmp.npz")
    np.savez(tmp, fc=fc.fc, matrix=np.asarray(fc.supercell.matrix), fc_time_s=t_fc, load_time_s=t_load,
             n_hvp=fc.report.n_hvp, n_atoms=fc.supercell.crystal.n_atoms)
    tmp.rename(out_npz)


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class FcStore:
    """Force constants per (model, structure, N): cached npz + json, computed in a watched child process."""

    def __init__(self, cache: Path, *, max_rss_gib: float, max_seconds: float, in_process: bool,
                 retry_infeasible: bool):
        self.cache = cache
        cache.mkdir(parents=True, exist_ok=True)
        self.max_rss_gib, self.max_seconds = max_rss_gib, max_seconds
        self.in_process, self.retry = in_process, retry_infeasible
        self.computed_now, self.from_cache = [], []

    def _key(self, minfo, structure, n):
        return f"{minfo['name']}-{minfo['sha256'][:10]}-{sha_file(structure)[:8]}-N{sc_tag(n)}"

    def _fail_path(self, minfo, structure, n):
        return self.cache / f"infeasible-{minfo['arch_sha256'][:10]}-{sha_file(structure)[:8]}-N{sc_tag(n)}.json"

    def infeasible(self, minfo, structure, n):
        p = self._fail_path(minfo, structure, n)
        if p.is_file() and not self.retry:
            f = json.loads(p.read_text())
            lim = f.get("limits", {})
            if lim.get("max_rss_gib", 0) >= self.max_rss_gib and lim.get("max_seconds", 0) >= self.max_seconds:
                return f
        return None

    def get(self, minfo, structure, n):
        """(fc array, meta dict) or (None, failure dict)."""
        key = self._key(minfo, structure, n)
        npz, meta_p = self.cache / f"{key}.npz", self.cache / f"{key}.json"
        if npz.is_file() and meta_p.is_file():
            self.from_cache.append(key)
            return np.load(npz)["fc"], json.loads(meta_p.read_text())
        fail = self.infeasible(minfo, structure, n)
        if fail is not None:
            return None, fail
        log(f"force constants {minfo['name']} N={n} ({structure.parent.name}) ...")
        t0 = time.time()
        peak_kib, reason = None, None
        if self.in_process:
            try:
                _worker(minfo["dir"], n, npz, structure)
            except Exception as e:  # recorded like a failed child process
                reason = f"{type(e).__name__}: {e}"
        else:
            logf = self.cache / f"{key}.log"
            with open(logf, "w") as fh:
                p = subprocess.Popen([sys.executable, __file__, minfo["dir"], sc_tag(n), str(npz), str(structure)],
                                     stdout=fh, stderr=subprocess.STDOUT)
                peak_kib = 0
                while p.poll() is None:
                    peak_kib = max(peak_kib, _rss_kib(p.pid))
                    if peak_kib > self.max_rss_gib * 2**20:
                        reason = f"peak memory above {self.max_rss_gib:g} GiB"
                    elif time.time() - t0 > self.max_seconds:
                        reason = f"longer than {self.max_seconds:g} s"
                    if reason:
                        p.kill()
                        p.wait()
                        break
                    time.sleep(0.5)
            if reason is None and p.returncode != 0:
                reason = f"worker failed (exit {p.returncode}), see {logf}"
        wall = time.time() - t0
        if reason is not None or not npz.is_file():
            fail = {"n": n, "reason": reason or "no output", "wall_s": wall,
                    "peak_rss_gib": None if peak_kib is None else peak_kib / 2**20, "model": minfo["name"],
                    "limits": {"max_rss_gib": self.max_rss_gib, "max_seconds": self.max_seconds}}
            if reason and reason.startswith(("peak", "longer")):
                self._fail_path(minfo, structure, n).write_text(json.dumps(fail, indent=1))
            log(f"  N={n} not feasible: {fail['reason']} (after {wall:.0f} s, peak "
                f"{fail['peak_rss_gib'] or float('nan'):.1f} GiB)")
            return None, fail
        d = np.load(npz)
        meta = {"n": n, "n_atoms": int(d["n_atoms"]), "n_hvp": int(d["n_hvp"]), "fc_time_s": float(d["fc_time_s"]),
                "load_time_s": float(d["load_time_s"]), "process_wall_s": wall,
                "peak_rss_gib": None if peak_kib is None else peak_kib / 2**20, "chunk_size": 1,
                "edge_chunk": "auto",
                "in_process": self.in_process, "load_avg": os.getloadavg()[0],
                "date": time.strftime("%Y-%m-%d %H:%M:%S")}
        meta_p.write_text(json.dumps(meta, indent=1))
        self.computed_now.append(key)
        log(f"  N={n}: {meta['n_atoms']} atoms, {meta['fc_time_s']:.1f} s, peak "
            f"{meta['peak_rss_gib'] or float('nan'):.1f} GiB")
        return d["fc"], meta

    def series(self, minfo, structure, ns):
        """{n: (fc, meta)} for ascending ns, stopping at the first infeasible N (larger ones are skipped);
        failures in ``fails``."""
        ok, fails = {}, {}
        for n in sorted(set(ns)):
            if fails:
                fails[n] = {"n": n, "reason": f"skipped (N={min(fails)} already infeasible)"}
                continue
            fc, meta = self.get(minfo, structure, n)
            (ok if fc is not None else fails)[n] = (fc, meta) if fc is not None else meta
        return ok, fails


if __name__ == "__main__":
    _worker(sys.argv[1], sc_value(sys.argv[2]), sys.argv[3], Path(sys.argv[4]))
