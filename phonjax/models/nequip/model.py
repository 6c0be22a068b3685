"""The NequIP family's model (:mod:`phonjax.models`): architecture config + parameters: energies, forces,
stress; save/load (orbax).

Energy functions are pure and jit-compiled once per (config, graph capacities):

* :meth:`Model.bind` (crystal) → ``f(positions (n, 3) Å, cell (3, 3) Å) -> E (eV)``; the graph (pairs and
  integer cell shifts) is fixed at bind time, ``f`` is jit-able and twice differentiable (jvp-of-grad for
  force constants).
* :func:`graph_energies` (config, params, graph, positions, cells) → (G,) eV for padded batches (training).
* :meth:`Model.energy_forces_stress` (atoms) → (E eV, F (n, 3) eV/Å, stress (3, 3) eV/Å³), stress in ASE's
  sign convention σ = (1/V) ∂E/∂ε for a symmetric strain ε of positions and cell.

A model directory holds ``config.yaml`` (``family: nequip`` and the architecture), ``metadata.json`` (provenance: source file hash,
nequip version, type names, conversion date, weights used) and ``params/`` (orbax checkpoint).
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from ase.data import chemical_symbols

from phonjax.config import from_dict, to_dict
from phonjax.graph import Graph, build_graph, edge_vectors, pad_positions
from phonjax.models.nequip.nn.config import ModelConfig, UnsupportedFeature  # noqa: F401  (re-export)
from phonjax.models import ModelLoadError
from phonjax.models.nequip import FAMILY
from phonjax.models.nequip.nn.nequip import NequIP, init_params
from phonjax.xla_options import kernel_jit

__all__ = ["Model", "ModelConfig", "load_nequip", "graph_energies", "UnknownSpeciesError", "ModelLoadError",
           "UnsupportedFeature", "FAMILY"]



class UnknownSpeciesError(ValueError):
    """A structure contains chemical species the model has no type for."""


# -- pure energy functions ------------------------------------------------------------------------
def node_energies(config: ModelConfig, params, graph: Graph, positions, cells, edge_chunk: int = 0,
                  edge_delta=None):
    """Per-atom energies (N,) eV (zero on padding nodes). positions (N, 3) Å, cells (3, 3) or (G, 3, 3).
    edge_chunk > 0: messages in rematerialised chunks of that many edges (memory, not numerics).
    edge_delta: None or (idx (A,) int, mask (A,) bool, δ (A, 3) Å): the edges ``idx`` moved by δ, computed as
    the network's ``active`` edges (same energy; derivatives in δ touch only those edges)."""
    _, vec_safe = edge_vectors(graph, positions, cells)
    active = None
    if edge_delta is not None:
        idx, mask, delta = edge_delta
        vec_a = jnp.where(mask[:, None], vec_safe[idx] + delta, vec_safe[idx])
        active = (idx, mask, vec_a)
    e = NequIP(config, edge_chunk).apply({"params": params}, vec_safe, graph.species, graph.senders,
                                         graph.receivers, graph.edge_mask, active)
    return jnp.where(graph.node_mask, e, 0.0)


def graph_energies(config: ModelConfig, params, graph: Graph, positions, cells):
    """Total energy of every graph (G,) eV (padding graphs: 0). Pure, jit-able, twice differentiable."""
    e = node_energies(config, params, graph, positions, cells)
    return jax.ops.segment_sum(e, graph.node_graph, num_segments=graph.n_graphs)


@partial(kernel_jit, static_argnums=(0, 5))
def _energy_single(config, params, graph, positions, cell, edge_chunk=0, edge_delta=None):
    n = graph.n_node_capacity
    k = positions.shape[0]
    pos = jnp.zeros((n, 3), positions.dtype).at[:k].set(positions)
    return jnp.sum(node_energies(config, params, graph, pos, cell, edge_chunk, edge_delta))


@partial(kernel_jit, static_argnums=0)
def _energy_forces_stress(config, params, graph, positions, cell):
    def f(pos, strain):
        sym = 0.5 * (strain + strain.T)
        defo = jnp.eye(3, dtype=pos.dtype) + sym
        return jnp.sum(node_energies(config, params, graph, pos @ defo, cell @ defo))

    e, (dpos, deps) = jax.value_and_grad(f, argnums=(0, 1))(positions, jnp.zeros((3, 3), positions.dtype))
    vol = jnp.abs(jnp.linalg.det(cell))
    return e, -dpos, deps / vol


@dataclass(frozen=True)
class BoundEnergy:
    """``(params, graph, positions (n, 3), cell (3, 3)) -> E`` for a fixed (hashable) config and edge chunking."""

    config: ModelConfig
    edge_chunk: int = 0

    #: accepts ``edge_delta`` (moved edges as a separate, sparse input; :func:`node_energies`)
    edge_split = True

    def __call__(self, params, graph, positions, cell, edge_delta=None):
        return _energy_single(self.config, params, graph, jnp.asarray(positions), jnp.asarray(cell),
                              self.edge_chunk, edge_delta)


#: Accelerators: edges per message chunk for a SevenNet-0-sized model (widest tensor-product output 3136 floats
#: per edge, 5 layers), scaled by the model's width (memory; :mod:`phonjax.memory` grows it while it fits).
EDGE_CHUNK_SIZE = 4096
_EDGE_CHUNK_REFERENCE = 3136 * 5
#: CPUs: bytes of one chunk's widest messages (as float32). The second-derivative kernels are memory-bound on a
#: CPU: chunks whose messages stay cache-sized run the forward, tangent and reverse passes from cache, and the
#: rematerialised forward costs less than the memory traffic it saves (measured: benchmarks/bench_hvp_engine.py).
CPU_EDGE_CHUNK_BYTES = 2**20


def auto_edge_chunk(config: ModelConfig, n_edges: int, backend: str | None = None) -> int:
    """Edges per rematerialised message chunk for a graph with ``n_edges`` edges (0: one chunk, when the graph
    is no larger). CPU (``backend`` None: JAX's default backend): the largest power of two whose widest
    tensor-product messages fit :data:`CPU_EDGE_CHUNK_BYTES` (at least 16). Accelerators: :data:`EDGE_CHUNK_SIZE`
    scaled by the model's per-edge width (widest tensor-product output × layers) relative to SevenNet-0's, at
    least 256."""
    from phonjax.models.nequip.nn import irreps as I

    widest = max(I.dim(I.uvu_mid(L["irreps_in"], config.sh_irreps, L["conv_out"])) for L in config.layer_irreps())
    if (backend or jax.default_backend()) == "cpu":
        fit = CPU_EDGE_CHUNK_BYTES // (4 * max(widest, 1))  # edges whose float32 messages fit the budget
        chunk = max(16, 1 << max(fit.bit_length() - 1, 0))
    else:
        chunk = max(256, int(EDGE_CHUNK_SIZE * _EDGE_CHUNK_REFERENCE / max(widest * config.num_layers, 1)))
    return 0 if n_edges <= chunk else chunk


# -- the model ------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Model:
    """A NequIP model: architecture ``config``, parameter pytree ``params``, provenance ``metadata``.
    Implements :class:`phonjax.models.PhononModel` (``family``, ``r_max``, ``receptive_field``, ``bind``)."""

    config: ModelConfig
    params: Any
    metadata: dict = field(default_factory=dict)
    family: ClassVar[str] = FAMILY

    @property
    def receptive_field(self) -> float:
        """Å: ``num_layers`` message-passing hops of ``r_max`` — how far an atom's energy sees."""
        return float(self.config.num_layers) * float(self.config.r_max)

    @property
    def type_names(self) -> tuple[str, ...]:
        return self.config.type_names

    @property
    def dtype(self) -> str:
        return self.config.dtype

    @property
    def r_max(self) -> float:
        return float(self.config.r_max)

    @classmethod
    def init(cls, config: ModelConfig, seed: int = 0, metadata: dict | None = None) -> "Model":
        """A freshly initialised model (torch-like random weights)."""
        return cls(config, init_params(config, seed), dict(metadata or {}))

    def n_params(self) -> int:
        return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(self.params)))

    def describe(self) -> str:
        c = self.config
        from phonjax.models.nequip.nn.config import VARIANTS

        variants = [f"{k}={getattr(c, k)}" for k, ok in VARIANTS.items() if getattr(c, k) != ok[0]]
        family = self.metadata.get("model_name") or ("NequIP-family" if variants else "NequIP")
        if c.modal_onehot:
            family += f" (fidelity {self.metadata.get('modality') or c.modal_onehot.index(1.0)})"
        return (f"{family} {c.num_layers} layers, SH {c.irreps_edge_sh}, r_max {c.r_max} Å, {len(c.type_names)} types, "
                f"{self.n_params():,} parameters, {c.dtype}{', ZBL' if c.zbl else ''}"
                + (f" ({', '.join(variants)})" if variants else "")
                + (f"; {self.metadata['message']}" if self.metadata.get("message") else ""))

    # -- species -----------------------------------------------------------------------------------
    def species(self, numbers) -> np.ndarray:
        """Model type index of each atomic number; UnknownSpeciesError names the unknown species."""
        numbers = np.asarray(numbers, int).reshape(-1)
        index = {name: i for i, name in enumerate(self.type_names)}
        syms = [chemical_symbols[z] if 0 < z < len(chemical_symbols) else f"Z={z}" for z in numbers]
        missing = sorted({s for s in syms if s not in index})
        if missing:
            raise UnknownSpeciesError(f"species {', '.join(missing)} not known to the model "
                                      f"(it has {len(self.type_names)} types)")
        return np.asarray([index[s] for s in syms], np.int32)

    def graph(self, structures, **capacities) -> Graph:
        """Padded graph of one structure (Crystal / ase.Atoms / (positions, cell, numbers)) or a list."""
        single = (isinstance(structures, tuple) and len(structures) == 3 and not hasattr(structures[0], "positions")
                  and np.asarray(structures[0]).ndim == 2)
        if single or not isinstance(structures, (list, tuple)):
            structures = [structures]
        pc, sp = [], []
        for s in structures:
            pos, cell, num = _unpack(s)
            pc.append((pos, cell))
            sp.append(self.species(num))
        return build_graph(pc, sp, self.r_max, **capacities)

    # -- energies ----------------------------------------------------------------------------------
    def bind(self, crystal, *, edge_chunk: int | None = None, **capacities) -> Callable:
        """``f(positions (n, 3) Å, cell (3, 3) Å) -> energy (eV)`` for the pairs of ``crystal``'s geometry.

        The neighbour graph (pairs within r_max and their cell shifts) is built once, here; f is pure,
        jit-able and twice differentiable (valid for small displacements around the bound geometry).
        f is a ``jax.tree_util.Partial`` whose leaves are the params and the graph, so passing it into
        jitted code shares one compilation across structures of the same padded shape (``f.graph``).
        ``capacities`` (n_nodes, n_edges) fix the padded graph size (default: bucketed).
        ``edge_chunk``: edges per rematerialised message chunk (0: all at once; None: :func:`auto_edge_chunk`,
        which chunks only graphs whose per-edge activations would not fit comfortably in memory).
        """
        pos, cell, num = _unpack(crystal)
        graph = self.graph((pos, cell, num), **capacities)
        if edge_chunk is None:
            edge_chunk = auto_edge_chunk(self.config, graph.n_edge_capacity)
        if isinstance(edge_chunk, bool) or not isinstance(edge_chunk, (int, np.integer)) or edge_chunk < 0:
            raise ValueError(f"edge_chunk must be an integer >= 0 or None, got {edge_chunk!r}")
        energy = jax.tree_util.Partial(BoundEnergy(self.config, int(edge_chunk)), self.params, graph)
        energy.graph = graph  # type: ignore[attr-defined]
        return energy

    def energy_forces_stress(self, atoms, graph: Graph | None = None):
        """(E eV, F (n, 3) eV/Å, stress (3, 3) eV/Å³ in ASE's sign convention) as numpy."""
        pos, cell, num = _unpack(atoms)
        if graph is None:
            graph = self.graph((pos, cell, num))
        n = pos.shape[0]
        e, f, s = _energy_forces_stress(self.config, self.params, graph,
                                        jnp.asarray(pad_positions(pos, graph.n_node_capacity)), jnp.asarray(cell))
        return float(e), np.asarray(f)[:n], np.asarray(s)

    # -- persistence -------------------------------------------------------------------------------
    def save(self, directory, overwrite: bool = False) -> Path:
        """Write ``directory`` (config.yaml, metadata.json, params/) atomically: a temporary sibling is
        filled first and renamed at the end, so an interrupted save leaves nothing half-written."""
        import orbax.checkpoint as ocp
        import yaml

        out = Path(directory).absolute()
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            if not overwrite:
                raise FileExistsError(f"{out} exists and is not empty")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            cfg = {"family": FAMILY, **to_dict(self.config)}
            (tmp / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
            meta = dict(self.metadata)
            meta.setdefault("type_names", list(self.type_names))
            meta.setdefault("saved", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
            meta["n_params"] = self.n_params()
            (tmp / "metadata.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
            ck = ocp.StandardCheckpointer()
            ck.save(tmp / "params", jax.tree_util.tree_map(np.asarray, self.params))
            ck.wait_until_finished()
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out


def load_nequip(directory) -> Model:
    """Load a NequIP-family model directory written by :meth:`Model.save` (or ``phonjax convert``); reached
    through :func:`phonjax.models.load_model`. A ``config.yaml`` without ``family`` is a NequIP one."""
    import orbax.checkpoint as ocp
    import yaml

    d = Path(directory).absolute()
    if not d.is_dir():
        raise ModelLoadError(f"model directory {d} does not exist")
    for name in ("config.yaml", "params"):
        if not (d / name).exists():
            raise ModelLoadError(f"{d} is not a phonjax model directory (missing {name})")
    try:
        raw = yaml.safe_load((d / "config.yaml").read_text())
        family = raw.pop("family", FAMILY) if isinstance(raw, dict) else FAMILY
        if family != FAMILY:
            raise ValueError(f"family {family!r} is not {FAMILY!r}")
        config = from_dict(ModelConfig, raw, "config.yaml")
    except (ValueError, TypeError, yaml.YAMLError) as e:
        raise ModelLoadError(f"{d / 'config.yaml'}: {e}") from None
    meta = {}
    if (d / "metadata.json").exists():
        try:
            meta = json.loads((d / "metadata.json").read_text())
        except json.JSONDecodeError as e:
            raise ModelLoadError(f"{d / 'metadata.json'} is corrupt: {e}") from None
    expected = param_shapes(config)
    try:
        params = ocp.StandardCheckpointer().restore(d / "params")
    except Exception as e:  # orbax raises many types for damaged checkpoints
        raise ModelLoadError(f"cannot read parameters in {d / 'params'}: {type(e).__name__}: {str(e)[:200]}") from None
    try:
        params = jax.tree_util.tree_map(_check_leaf, params, expected, is_leaf=_is_shape)
    except ModelLoadError:
        raise
    except Exception:
        raise ModelLoadError(f"parameters in {d / 'params'} do not match config.yaml's architecture") from None
    return Model(config, jax.device_put(params), meta)


def param_shapes(config: ModelConfig) -> dict:
    """The parameter tree ``config`` defines, as nested dicts with ``[shape, dtype]`` leaves (from
    ``init_params`` traced abstractly; kept in the program cache, :mod:`phonjax.program_cache`, so a new process
    need not trace the network to load a model)."""
    from phonjax.program_cache import cached_json

    def compute():
        tree = jax.eval_shape(lambda: init_params(config))
        return jax.tree_util.tree_map(lambda x: [list(x.shape), str(x.dtype)], tree)

    return cached_json("param_shapes", (config,), compute)


def _is_shape(x) -> bool:
    return isinstance(x, list) and len(x) == 2 and isinstance(x[1], str)


def _check_leaf(x, ref):
    x = np.asarray(x)
    shape, dtype = tuple(ref[0]), np.dtype(ref[1])
    if x.shape != shape or x.dtype != dtype:
        raise ModelLoadError(f"parameter shape/dtype {x.shape} {x.dtype} does not match {shape} {dtype}")
    if not np.all(np.isfinite(x)):
        raise ModelLoadError("parameters contain NaN/inf")
    return x


def _unpack(s):
    """(positions (n, 3), cell (3, 3), numbers (n,)) of a Crystal, ase.Atoms or a 3-tuple."""
    if isinstance(s, tuple) and len(s) == 3:
        pos, cell, num = s
    else:
        pos, cell, num = s.positions, s.cell, s.numbers
        cell = getattr(cell, "array", cell)
        if hasattr(s, "pbc") and not np.all(s.pbc):
            raise ValueError("phonjax models need periodic structures (pbc=True in all directions)")
    return (np.asarray(pos, np.float64).reshape(-1, 3), np.asarray(cell, np.float64).reshape(3, 3),
            np.asarray(num, int).reshape(-1))
