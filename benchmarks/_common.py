"""Shared helpers of the comparison benchmarks: timing, metadata, structures, torch nequip models and their
autograd energies / forces / Hessian rows on the same weights as a converted phonjax model.

Torch is imported only here and in the benchmark scripts (never by phonjax itself).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
import platform
import resource
import statistics
import sys
import time

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repo's phonjax / convert / tests helpers
sys.path.insert(0, str(ROOT / "tests"))

import phonjax  # noqa: E402,F401  (x64)
import jax  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.build import bulk  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def timed(fn, repeats: int = 3, warmup: int = 1) -> dict:
    """Median wall time (s) of ``fn()`` over ``repeats`` after ``warmup`` calls; first call timed separately
    (it includes compilation for jitted code)."""
    t = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t
    for _ in range(max(0, warmup - 1)):
        fn()
    ts = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return {"median_s": statistics.median(ts), "first_s": first, "compile_s_est": max(0.0, first - min(ts)),
            "repeats": len(ts), "out": out}


def block(x):
    return jax.block_until_ready(x)


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def package_versions(names) -> dict:
    """{name: installed version} of the named distributions that are installed."""
    import importlib.metadata as im
    vers = {}
    for p in names:
        try:
            vers[p] = im.version(p)
        except im.PackageNotFoundError:
            pass
    return vers


def metadata(extra: dict | None = None) -> dict:
    """Machine, versions, device and load (the 1-minute load average; the CPU is shared)."""
    vers = package_versions(("jax", "jaxlib", "flax", "e3nn-jax", "torch", "nequip", "phonopy", "numpy", "ase"))
    try:
        import torch
        torch_threads = torch.get_num_threads()
    except Exception:
        torch_threads = None
    meta = {"machine": platform.machine(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "versions": vers, "backend": jax.default_backend(),
            "device": str(jax.devices()[0]), "n_devices": jax.device_count(), "torch_threads": torch_threads,
            "load_avg_start": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    meta.update(extra or {})
    return meta


def write_json(path: Path, meta: dict, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(meta, load_avg_end=os.getloadavg())
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=_json_default) + "\n")


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


# -- structures ------------------------------------------------------------------------------------
def lif_primitive() -> Atoms:
    return bulk("LiF", "rocksalt", a=4.03)


def low_symmetry_cell(seed: int = 7) -> Atoms:
    """An 8-atom triclinic (P1) Li4F4 cell: distorted rock-salt conventional cell, nothing symmetric."""
    rng = np.random.default_rng(seed)
    a = bulk("LiF", "rocksalt", a=4.03, cubic=True)
    cell = a.cell.array @ (np.eye(3) + np.array([[0.03, 0.05, -0.02], [0.01, -0.04, 0.06], [0.02, 0.03, 0.05]]))
    frac = a.get_scaled_positions() + rng.normal(0, 0.015, (len(a), 3))
    return Atoms(a.get_chemical_symbols(), scaled_positions=frac, cell=cell, pbc=True)


# -- models ----------------------------------------------------------------------------------------
def arch(name: str) -> dict:
    """Architecture dicts of tests/model_fixtures.py: "small" (4 types) or "oam-l" (OAM-L layer sizes,
    89 types, r_max 6 Å, l_max 3, 128x0e+64x1o+32x2e+32x3o, 6 layers)."""
    import model_fixtures as mf
    return {"small": mf.SMALL, "oam-l": mf.OAM_L}[name]


def build_pair(name: str, seed: int = 0):
    """(torch nequip model (float64, eval), phonjax float64 model, phonjax float32-network model) on the same
    random perturbed weights."""
    import model_fixtures as mf
    from phonjax.convert.nequip import from_torch_module
    tm = mf.build_torch_model(arch(name), seed=seed, dtype="float64", zbl=True)
    m64 = from_torch_module(tm, check=False)
    m32 = from_torch_module(tm, dtype="float32", check=False)
    return tm, m64, m32


class TorchSystem:
    """One structure prepared for a torch nequip model: neighbour list built once (as phonjax binds once).

    ``energy_forces()`` → (E, F) through the full model (forces by its own autograd);
    ``rows(atoms_dirs)`` → Hessian rows ∂F/∂u by double backward: one forward + create_graph gradient, then one
    backward per row (rows = [(atom, direction), ...]) → (n_rows, n, 3).
    """

    def __init__(self, tm, atoms: Atoms):
        import torch
        from phonjax.convert.nequip import torch_graph_input
        self.torch = torch
        self.tm = tm
        self.data = torch_graph_input(tm, atoms)
        self.n_edges = int(self.data["edge_index"].shape[1])

    def energy_forces(self):
        out = self.tm(dict(self.data))
        return float(out["total_energy"].detach().sum()), out["forces"].detach().numpy()

    def _energy(self, pos):
        d = dict(self.data)
        d["pos"] = pos
        return self.tm.model.func(d)["total_energy"].sum()

    def rows(self, rows) -> np.ndarray:
        torch = self.torch
        pos = self.data["pos"].clone().requires_grad_(True)
        g = torch.autograd.grad(self._energy(pos), pos, create_graph=True)[0]
        out = [torch.autograd.grad(g[i, a], pos, retain_graph=k < len(rows) - 1)[0].detach().numpy()
               for k, (i, a) in enumerate(rows)]
        return np.stack(out)


def epoch_throughput(history) -> tuple[float, float]:
    """(seconds, structures) of a finetune history's epochs ≥ 2 (the first includes compilation)."""
    rows = [h for h in history if h["epoch"] >= 2]
    return sum(h["train_time_s"] for h in rows), sum(h["structures_per_s"] * h["train_time_s"] for h in rows)
