"""Data-parallel finetuning: each batch split over a 1-D device mesh, parameters and optimiser state replicated.

Layout. A global batch of B structures is cut into D contiguous chunks (D = devices of the mesh, chunk sizes
differ by at most one); every chunk is padded to the same per-device capacities (``ceil(B / D)`` structures)
by :func:`phonjax.train.model_api.make_batch`, and the D padded sub-batches are concatenated along each
array's leading axis (graphs, nodes or edges) into one global :class:`Batch` sharded ``P("data")``: device d
holds exactly its own padded sub-batch, with node indices local to it. A chunk left empty (a last batch of
an epoch with fewer structures than devices) holds a *zero-weight* copy of the batch's first structure
(every label mask false), so it adds nothing to any loss or error sum.

Loss. Every loss term is a masked mean; the step sums the per-device masked sums and the counts of real
items separately (``psum`` over the mesh axis), so the data-parallel loss and gradient are those of the
whole global batch — the same function as on one device, up to the order of the floating-point sums. The
gradient is reduced by one ``psum`` of the per-device gradients (:func:`phonjax.train.steps.build_steps`).
One device is the 1-device mesh of the same code (its global batch is the plain padded batch).

Multi-host. With ``parallel.distributed: true`` in the config (or ``JAX_COORDINATOR_ADDRESS`` in the
environment) :func:`initialize_distributed` calls ``jax.distributed.initialize`` before anything else; the
mesh then spans every process's devices, each process builds only the sub-batches of its own devices
(the batch order is a pure function of the seed, the same in every process), and orbax writes the
replicated state once. Not exercised by the tests (one host here).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from phonjax.config import ConfigError
from phonjax.train.data import Capacities, Frame
from phonjax.train.model_api import Batch, TrainableModel, make_batch

AXIS = "data"


@dataclass(frozen=True)
class DataParallel:
    """A 1-D mesh (axis ``"data"``) over the devices that share every batch."""

    mesh: Mesh

    @property
    def n_devices(self) -> int:
        return int(self.mesh.devices.size)

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    @property
    def split(self) -> NamedSharding:
        return NamedSharding(self.mesh, P(AXIS))

    def per_device(self, batch_size: int) -> int:
        """Structures per device of a global batch of ``batch_size`` (the per-device capacity)."""
        return math.ceil(batch_size / self.n_devices)

    def replicate(self, tree):
        """``tree`` (arrays) copied onto every device of the mesh."""
        return jax.device_put(tree, self.replicated)

    def chunks(self, frames: Sequence[Frame]) -> list[list[Frame]]:
        """``frames`` cut into n_devices contiguous chunks whose sizes differ by at most one."""
        n, d = len(frames), self.n_devices
        bounds = [k * n // d for k in range(d + 1)]
        return [list(frames[bounds[k]:bounds[k + 1]]) for k in range(d)]

    def batch(self, model: TrainableModel, frames: Sequence[Frame], caps: Capacities,
              use_stress: bool = True) -> Batch:
        """The global batch of ``frames`` (each device's chunk padded to ``caps``), sharded over the mesh.
        Only this process's devices' sub-batches are built (multi-host)."""
        if not frames:
            raise ValueError("an empty batch")
        devices = list(self.mesh.devices.flat)
        me = jax.process_index()
        local = [(d, c) for d, c in zip(devices, self.chunks(frames)) if d.process_index == me]
        subs = [_zero_weight(make_batch(model, frames[:1], caps, use_stress)) if not c
                else make_batch(model, c, caps, use_stress) for _, c in local]
        mine = [d for d, _ in local]

        def assemble(*leaves):
            shape = (self.n_devices * leaves[0].shape[0],) + tuple(leaves[0].shape[1:])
            parts = [jax.device_put(x, d) for x, d in zip(leaves, mine)]
            return jax.make_array_from_single_device_arrays(shape, self.split, parts)

        return jax.tree_util.tree_map(assemble, *subs)


def _zero_weight(b: Batch) -> Batch:
    """The same padded batch with every label mask false: it counts in no loss term and no error sum."""
    lab = b.labels
    off = jnp.zeros_like
    return b._replace(labels=lab._replace(n_atoms=off(lab.n_atoms), graph_mask=off(lab.graph_mask),
                                          node_mask=off(lab.node_mask), stress_mask=off(lab.stress_mask)))


def initialize_distributed(cfg) -> bool:
    """``jax.distributed.initialize`` (multi-host) when ``cfg.distributed`` (a ParallelConfig) is true or
    ``JAX_COORDINATOR_ADDRESS`` is set; arguments left null are detected by JAX (SLURM, Open MPI, Cloud TPU,
    ``JAX_COORDINATOR_ADDRESS``). Must run before any JAX computation. True when it initialised now."""
    if not (cfg.distributed or os.environ.get("JAX_COORDINATOR_ADDRESS")):
        return False
    if jax.distributed.is_initialized():
        return False
    try:
        jax.distributed.initialize(coordinator_address=cfg.coordinator_address, num_processes=cfg.num_processes,
                                   process_id=cfg.process_id)
    except (RuntimeError, ValueError, TypeError) as e:
        raise ConfigError(f"parallel.distributed: jax.distributed.initialize failed: "
                          f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return True


def data_parallel(cfg=None, devices: Sequence | None = None) -> DataParallel:
    """The mesh of a ParallelConfig: its first ``cfg.devices`` devices of ``jax.devices()`` (all processes'),
    or all of them; ``devices`` overrides both (an explicit device list)."""
    if devices is None:
        devices = jax.devices()
        n = None if cfg is None else cfg.devices
        if n is not None:
            if n > len(devices):
                raise ConfigError(f"parallel.devices = {n}, but JAX sees only {len(devices)} device(s) "
                                  f"({devices[0].platform})")
            devices = devices[:n]
    devices = list(devices)
    if not devices:
        raise ConfigError("parallel: no devices")
    return DataParallel(Mesh(np.array(devices), (AXIS,)))
