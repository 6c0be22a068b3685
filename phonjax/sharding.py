"""Scaling over devices: q-points and batched force constants sharded with ``jax.sharding`` (issue 8).

Two data-parallel axes, each a 1-D :class:`jax.sharding.Mesh` over the devices:

* :func:`sharded_frequencies` shards q-points. The q-independent set-up (long-range correction object, q-space
  ASR δ, Wigner–Seitz images, force-constant blocks) is built once on the host and replicated; each device then
  runs, on its own block of q (``jax.shard_map``), the Fourier transform C_sr(q) (the kernel of
  :mod:`phonjax.fourier`), adds its long-range term C_dd(q), applies δ, mass-weights and diagonalises (the
  kernel of :mod:`phonjax.dynmat`; δ, directions and the long-range term come from dynmat's public functions,
  ``lr='auto'`` from :mod:`phonjax.longrange.policy`). The long-range term is produced per shard by a host
  callback (``jax.make_array_from_callback``): each process evaluates C_dd only for the q-points its own devices
  hold. Results equal :meth:`phonjax.fc_record.ForceConstants.frequencies` to rounding.
* :func:`sharded_force_constants_batch` shards structures: the bound energies (a pytree per structure, see
  :func:`phonjax.force_constants.force_constants_batch`) are stacked, the batch padded to a multiple of the
  device count, and each device runs the vmapped Hessian-vector-product kernel on its structures.

Multi-host (several processes, each with its own devices): call, in every process and before any other JAX
call::

    import jax
    jax.distributed.initialize(coordinator_address="host0:12345", num_processes=P, process_id=k)
    # (on SLURM / Cloud TPU / Open MPI the arguments are detected: jax.distributed.initialize())

then :func:`device_mesh` spans ``jax.devices()`` (all processes' devices), inputs are assembled with
``jax.make_array_from_callback`` (each process materialises only its addressable shards) and results are
gathered to every process with ``multihost_utils.process_allgather``. Every process must call the same
functions with the same arguments (SPMD). On one host with several GPUs nothing needs initialising; on CPU,
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (set before importing jax) simulates N devices.
"""
from __future__ import annotations

import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from phonjax import dynmat
from phonjax.hvp import gather
from phonjax.fourier import bucket, cq_chunk, cq_kernel, lattice_blocks, padded_lattice, ws_images

__all__ = ["ShardingError", "device_mesh", "sharded_frequencies", "sharded_force_constants_batch"]


class ShardingError(ValueError):
    """Bad input for the sharded drivers (mesh, axis name, arguments)."""


def device_mesh(devices=None, axis: str = "d") -> Mesh:
    """A 1-D mesh over ``devices`` (default: ``jax.devices()``, every process's devices) named ``axis``."""
    devs = list(jax.devices() if devices is None else devices)
    if not devs:
        raise ShardingError("no devices for the mesh")
    return Mesh(np.array(devs), (axis,))


def _mesh_axis(mesh: Mesh | None) -> tuple[Mesh, str, int]:
    mesh = device_mesh() if mesh is None else mesh
    if not isinstance(mesh, Mesh) or len(mesh.axis_names) != 1:
        raise ShardingError("mesh must be a 1-D jax.sharding.Mesh (see phonjax.sharding.device_mesh)")
    axis = mesh.axis_names[0]
    return mesh, axis, int(mesh.devices.size)


# --------------------------------------------------------------------------------------------------------
# q-points
def sharded_frequencies(fcobj, qpoints, *, mesh: Mesh | None = None, lr: str = "auto", born=None,
                        q_direction=None, ewald_lambda=None, leak_region=None, lo_projection: bool = False,
                        asr: bool | None = None, return_eigenvectors: bool = False, unit: str = "THz",
                        correction=None):
    """Frequencies (nq, 3·n_prim) at reduced ``qpoints`` (nq, 3) with q sharded over ``mesh``'s devices.

    Same arguments and result as :meth:`ForceConstants.frequencies` (ascending, imaginary negative, ``unit``;
    q_direction reduced; with ``return_eigenvectors`` also (nq, 3n, 3n) eigenvectors, columns = modes), or a
    prebuilt ``correction`` instead of the long-range arguments. q is padded (with Γ) to
    n_devices × bucket(⌈nq / n_devices⌉) so lists of similar length reuse one compilation.
    """
    if unit not in dynmat.UNITS:
        raise ShardingError(f"unknown frequency unit {unit!r}; choose one of {', '.join(dynmat.UNITS)}")
    mesh, axis, ndev = _mesh_axis(mesh)
    q = dynmat.check_qpoints(qpoints)
    if correction is None:
        from phonjax.longrange.spec import LongRange
        correction = LongRange(lr, born, ewald_lambda, leak_region, lo_projection).correction(fcobj)
    asr = fcobj.qspace_asr if asr is None else bool(asr)
    nq = len(q)
    sc = fcobj.supercell
    dirs = dynmat.cartesian_directions(sc.primitive, q_direction, nq)
    fc_sr = fcobj.fc if correction is None else correction.short_range_fc
    im = ws_images(sc)
    delta = dynmat.asr_delta(fcobj, correction, images=im) if asr else None
    n = sc.primitive.n_atoms
    per = bucket(-(-nq // ndev))
    total = per * ndev
    qp = np.zeros((total, 3))
    qp[:nq] = q
    dp = None
    if dirs is not None:
        dp = np.full((total, 3), np.nan)
        dp[:nq] = dirs
    qs = NamedSharding(mesh, P(axis))

    def lr_block(index):
        qb = qp[index[0]]
        if correction is None:
            return np.zeros((len(qb), n, 3, n, 3), np.complex128)
        db = None if dp is None else dp[index[0]]
        return np.asarray(dynmat.long_range_terms(correction, sc.primitive, qb, db), np.complex128)

    q_arr = jax.make_array_from_callback((total, 3), qs, lambda idx: qp[idx])
    lr_arr = jax.make_array_from_callback((total, n, 3, n, 3), qs, lr_block, dtype=jnp.complex128)
    d = np.zeros((3 * n, 3 * n), np.complex128) if delta is None else np.asarray(delta, np.complex128)
    ism = np.repeat(1.0 / np.sqrt(np.asarray(fcobj.primitive.masses, np.float64)), 3)
    F = lattice_blocks(fc_sr, sc, im)
    cpu = jax.default_backend() == "cpu"  # frequencies from the same eigenvalue solver as dynmat's
    out = _q_kernel(mesh, axis, cq_chunk(per, F.shape[1], n), cpu)(
        jnp.asarray(F), jnp.asarray(padded_lattice(im)), jnp.asarray(im.dtau), q_arr, lr_arr, jnp.asarray(d),
        jnp.asarray(ism))
    if cpu:
        f = dynmat.eigen_frequencies(gather(out[2])[:nq], fcobj.primitive.masses, d)
    else:
        f = dynmat.thz_from_eigenvalues(gather(out[0])[:nq])
    f = dynmat.convert_units(f, unit)
    if return_eigenvectors:
        return f, gather(out[1])[:nq]
    return f


_Q_KERNELS: dict = {}


def _q_kernel(mesh: Mesh, axis: str, chunk: int, with_cq: bool):
    """jit(shard_map(C_sr(q) + C_dd(q) → eigh)) for one mesh and chunk size (cached: no recompilation); with_cq:
    also return C(q) (nq, n, 3, n, 3) for the host's eigenvalue solver (CPU)."""
    key = (mesh, axis, chunk, with_cq)
    if key not in _Q_KERNELS:
        def local(F, lattice, dtau, q, lr, delta, ism):
            cq = cq_kernel(F, lattice, dtau, q, chunk) + lr  # (per, n, 3, n, 3)
            nb, n = cq.shape[0], cq.shape[1]
            w, v = dynmat.eig_kernel(cq.reshape(nb, 3 * n, 3 * n), delta, ism)
            return (w, v, cq) if with_cq else (w, v)

        rep = P()
        outs = (P(axis),) * (3 if with_cq else 2)
        _Q_KERNELS[key] = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(rep, rep, rep, P(axis), P(axis), rep, rep),
                                                out_specs=outs))
    return _Q_KERNELS[key]


# --------------------------------------------------------------------------------------------------------
# batched force constants
_FC_KERNELS: dict = {}


def _fc_kernel(mesh: Mesh, axis: str, mode: str, chunk: int | None):
    key = (mesh, axis, mode, chunk)
    if key not in _FC_KERNELS:
        from phonjax.hvp import hvp_map

        def local(energy, pos, cell, directions):
            return jax.vmap(lambda e, p, c: hvp_map(e, p, c, directions, mode, chunk))(energy, pos, cell)

        _FC_KERNELS[key] = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(axis), P(axis), P(axis), P()),
                                                 out_specs=P(axis), check_vma=False))
        # check_vma=False: the replicated tangents meet a device-varying primal inside jax.linearize
    return _FC_KERNELS[key]


def sharded_force_constants_batch(model_or_energy_fn, structures: Sequence, supercell, *,
                                  mesh: Mesh | None = None, mode: str = "jvp", chunk_size: int | None = None,
                                  symmetrize: bool = True, asr: str | None = "phonopy") -> list:
    """Force constants of many structures with the structures sharded over ``mesh``'s devices.

    Same arguments and result as :func:`phonjax.force_constants.force_constants_batch` (a list of
    :class:`ForceConstants` in input order). Structures with equal shapes (supercell atoms, padded graph /
    pair-list leaves) form one sharded call; each group is padded to a multiple of the device count by
    repeating its last structure. mode: "jvp" or "linearize".
    """
    from phonjax.force_constants import as_supercell, bound_energy, model_provenance, per_structure, results_from_hvps
    from phonjax.hvp import hvp_directions, pad_directions
    if mode not in ("jvp", "linearize"):
        raise ShardingError(f"sharded force constants support mode 'jvp' or 'linearize', not {mode!r}")
    structures = list(structures)
    if not structures:
        raise ShardingError("no structures")
    mesh, axis, ndev = _mesh_axis(mesh)
    scs = [as_supercell(s, m) for s, m in zip(structures, per_structure(supercell, len(structures)))]
    energies = [bound_energy(model_or_energy_fn, sc.crystal) for sc in scs]
    groups: dict = {}  # one sharded call per group of equal shapes (padded graphs of other sizes recompile)
    for k, (sc, e) in enumerate(zip(scs, energies)):
        key = (sc.primitive.n_atoms, sc.crystal.n_atoms, jax.tree_util.tree_structure(e),
               tuple((np.shape(x), np.asarray(x).dtype.str) for x in jax.tree_util.tree_leaves(e)))
        groups.setdefault(key, []).append(k)
    shard = NamedSharding(mesh, P(axis))
    out: list = [None] * len(scs)
    for members in groups.values():
        t0 = time.perf_counter()
        idx = members + [members[-1]] * ((-len(members)) % ndev)  # pad the batch to a multiple of ndev
        stacked = jax.tree_util.tree_map(lambda *xs: jax.device_put(jnp.stack(xs), shard),
                                         *[energies[k] for k in idx])
        pos = jax.device_put(jnp.stack([jnp.asarray(scs[k].crystal.positions) for k in idx]), shard)
        cell = jax.device_put(jnp.stack([jnp.asarray(scs[k].crystal.cell) for k in idx]), shard)
        V, _, _ = hvp_directions(scs[members[0]])
        Vp, c = pad_directions(V, chunk_size)
        hs = gather(_fc_kernel(mesh, axis, mode, c)(stacked, pos, cell, jnp.asarray(Vp)))[:len(members), :len(V)]
        dt = (time.perf_counter() - t0) / len(members)
        for k, fc in results_from_hvps(hs, members, scs, symmetrize=symmetrize, asr=asr, mode=mode,
                                       wall_time_s=dt, provenance=model_provenance(model_or_energy_fn)).items():
            out[k] = fc
    return out
