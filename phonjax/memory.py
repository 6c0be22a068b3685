"""Memory chosen for the user: how many Hessian-vector products to run at once (``chunk_size``) and how many
edges per rematerialised message chunk (``edge_chunk``), from the memory available and the model's size.

Budget: ``memory_budget`` argument (bytes), else ``$PHONJAX_MEMORY_BUDGET`` ("12G", "512M", "2.5GiB" or bytes),
else what is free now — on a GPU ``bytes_limit − bytes_in_use`` of ``jax.devices()[0].memory_stats()``, on a CPU
``MemAvailable`` of /proc/meminfo — times :data:`USABLE_FRACTION`.

Estimate (bytes) of one forward-over-reverse HVP direction of a NequIP model in dtype size s:

    per_direction = K_ACT·s·E_act·W + K_EDGE·s·E·L·(n_sh + n_bessel + 16) + K_NODE·s·N·L·D

E: padded edges; L: layers; W: per-edge floats of the tensor-product stage (sender features + uvu paths + radial
weights), summed over all layers when unchunked (E_act = E) and the widest layer when the edges run in
rematerialised chunks (E_act = edge_chunk); n_sh / n_bessel: spherical-harmonic / Bessel widths; N: padded
atoms; D: the widest node feature. Fixed: :data:`BASE_BYTES` + 3 copies of the parameters. The factors count the
primal, its tangent and the reverse-pass residuals; they were calibrated on the peak-RSS measurements quoted
in README.md (LiF, 2 HVPs: SevenNet-0 float32 3³/5³ with and without edge chunks and 13³ chunked; an
OAM-L-sized model float64 3³ unchunked, one direction at a time) and err on the high side (by up to ~1.7× for
SevenNet-0). ``benchmarks/bench_memory.py`` measures peak memory and time against the estimate.

Rule (:func:`plan_hvp_memory`): keep the automatic edge chunk (``phonjax.models.nequip.model.auto_edge_chunk``) and vmap all
directions when they fit; otherwise run ``chunk_size`` = ⌊budget / per_direction⌋ directions per ``lax.map``
step; when even one direction does not fit, halve the edge chunk (down to :data:`MIN_EDGE_CHUNK`). On an
accelerator the edge chunk is instead doubled while all directions still fit (fewer sequential scan steps).
"""
from __future__ import annotations

from dataclasses import dataclass
import os
import re

__all__ = ["MemoryPlan", "plan_hvp_memory", "available_memory", "parse_bytes", "hvp_bytes_per_direction",
           "ENV_BUDGET", "USABLE_FRACTION"]

ENV_BUDGET = "PHONJAX_MEMORY_BUDGET"
#: Share of the free memory the HVP kernel may plan to use (the rest: XLA workspace, fragmentation, other work).
USABLE_FRACTION = 0.6
#: Per-edge activation copies (primal, tangent, residuals of the reverse pass and their tangents).
K_ACT = 5.0
#: Per-edge geometric quantities (SH, radial basis, edge vectors) kept for all edges, per layer.
K_EDGE = 2.0
#: Node features kept per layer.
K_NODE = 3.0
#: Process and runtime overhead independent of the graph (bytes).
BASE_BYTES = 1.5 * 2**30
#: Smallest edge chunk the planner goes down to.
MIN_EDGE_CHUNK = 128

_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "KIB": 2**10, "M": 2**20, "MB": 2**20, "MIB": 2**20,
          "G": 2**30, "GB": 2**30, "GIB": 2**30, "T": 2**40, "TB": 2**40, "TIB": 2**40}


@dataclass(frozen=True)
class MemoryPlan:
    """chunk_size: HVP directions per ``lax.map`` step (None: all at once, vmapped); edge_chunk: edges per
    message chunk (0: none); budget / per_direction / fixed: bytes used for the choice; fits: whether the
    estimate at the chosen setting is within the budget; source: where the budget came from."""

    chunk_size: int | None
    edge_chunk: int
    budget: int
    per_direction: int
    fixed: int
    n_directions: int
    fits: bool
    source: str


def parse_bytes(text) -> int:
    """"12G", "512 MiB", "2.5GB", "1000000" → bytes (powers of 1024). ValueError on anything else."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).upper() not in _UNITS:
        raise ValueError(f"cannot read a memory size from {text!r} (e.g. 12G, 512M, 2.5GiB)")
    value = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if value <= 0:
        raise ValueError(f"memory size must be positive, got {text!r}")
    return int(value)


def _host_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def available_memory(device=None) -> tuple[int, str]:
    """(bytes free for phonjax now, source): ``$PHONJAX_MEMORY_BUDGET`` (used as is) or the device's / host's
    free memory × :data:`USABLE_FRACTION`."""
    env = os.environ.get(ENV_BUDGET)
    if env:
        return parse_bytes(env), ENV_BUDGET
    import jax

    dev = device or jax.devices()[0]
    if dev.platform != "cpu":
        try:
            st = dev.memory_stats() or {}
            if "bytes_limit" in st:
                free = int(st["bytes_limit"]) - int(st.get("bytes_in_use", 0))
                return int(free * USABLE_FRACTION), f"{dev.platform} memory_stats"
        except Exception:  # a backend without memory_stats: fall through to the host
            pass
    host = _host_available()
    if host is None:
        return 8 * 2**30, "default (no /proc/meminfo)"
    return int(host * USABLE_FRACTION), "MemAvailable"


def _widths(config) -> tuple[list[int], int, int, int]:
    """(per-layer per-edge floats of the TP stage, n_sh, n_bessel, widest node feature) of a ModelConfig."""
    from phonjax.models.nequip.nn import irreps as I

    per_layer, node = [], 0
    for L in config.layer_irreps():
        irr_in, out = L["irreps_in"], L["conv_out"]
        mid = I.uvu_mid(irr_in, config.sh_irreps, out)
        per_layer.append(I.dim(irr_in) + I.dim(mid) + I.uvu_numel(irr_in, config.sh_irreps, out))
        node = max(node, I.dim(irr_in), I.dim(mid), I.dim(out))
    return per_layer, I.dim(config.sh_irreps), int(config.num_bessels), node


def hvp_bytes_per_direction(config, n_nodes: int, n_edges: int, edge_chunk: int) -> int:
    """Estimated bytes of one HVP direction (module docstring) for padded ``n_nodes`` / ``n_edges``."""
    import numpy as np

    s = np.dtype(config.dtype).itemsize
    per_layer, n_sh, n_b, node = _widths(config)
    L = len(per_layer)
    act = (edge_chunk * max(per_layer)) if 0 < edge_chunk < n_edges else n_edges * sum(per_layer)
    return int(s * (K_ACT * act + K_EDGE * n_edges * L * (n_sh + n_b + 16) + K_NODE * n_nodes * L * node))


def plan_hvp_memory(config, n_params: int, n_nodes: int, n_edges: int, n_directions: int, *,
                    edge_chunk: int | None = None, chunk_size="auto", memory_budget=None,
                    grow_edge_chunk: bool | None = None, n_devices: int = 1) -> MemoryPlan:
    """Choose (chunk_size, edge_chunk) for ``n_directions`` HVPs of a model with ``config`` on a graph of
    ``n_nodes`` / ``n_edges`` (padded). Explicit ``edge_chunk`` (int) / ``chunk_size`` (int or None) are kept;
    "auto" / None edge_chunk are chosen. ``memory_budget``: bytes (int) or a string for :func:`parse_bytes`.
    grow_edge_chunk: double the automatic edge chunk while all directions still fit (fewer sequential scan
    steps; None: on accelerators only — on CPUs the measured automatic chunk is also the faster one).
    n_devices: the directions are split over that many devices; the plan is per device (its share of the
    directions and, on the CPU, whose simulated devices share the host's memory, its share of the budget)."""
    import numpy as np
    from phonjax.models.nequip.model import auto_edge_chunk

    if memory_budget is None:
        budget, source = available_memory()
    else:
        budget, source = (parse_bytes(memory_budget) if isinstance(memory_budget, str) else int(memory_budget)), \
            "argument"
        if budget <= 0:
            raise ValueError(f"memory_budget must be positive, got {memory_budget!r}")
    if n_devices > 1:
        import jax
        n_directions = -(-n_directions // n_devices)
        if jax.default_backend() == "cpu":
            budget = max(1, budget // n_devices)
    fixed = int(BASE_BYTES + 3 * n_params * np.dtype(config.dtype).itemsize)
    room = budget - fixed
    ec = auto_edge_chunk(config, n_edges) if edge_chunk is None else int(edge_chunk)
    per = hvp_bytes_per_direction(config, n_nodes, n_edges, ec)
    if edge_chunk is None and chunk_size == "auto":
        while per > room and (ec == 0 or ec > MIN_EDGE_CHUNK):
            ec = max(MIN_EDGE_CHUNK, (n_edges if ec == 0 else ec) // 2)
            per = hvp_bytes_per_direction(config, n_nodes, n_edges, ec)
    if grow_edge_chunk is None:
        import jax
        grow_edge_chunk = jax.default_backend() != "cpu"
    if edge_chunk is None and chunk_size == "auto" and grow_edge_chunk:
        while 0 < ec < n_edges:
            nxt = 2 * ec if 2 * ec < n_edges else 0
            p2 = hvp_bytes_per_direction(config, n_nodes, n_edges, nxt)
            if p2 * n_directions > room:
                break
            ec, per = nxt, p2
    if chunk_size == "auto":
        fit = max(1, room // per) if room > 0 else 1
        cs = None if fit >= n_directions else int(fit)
    else:
        cs = chunk_size
    used = fixed + per * (n_directions if cs is None else min(cs, n_directions))
    return MemoryPlan(cs, int(ec), int(budget), int(per), fixed, int(n_directions), bool(used <= budget), source)
