"""phonjax.sharding on 4 simulated CPU devices: sharded results equal the single-device engine.

The checks run in a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` and
``JAX_PLATFORMS=cpu`` (the flag must be set before jax is imported). References are the single-device
:meth:`ForceConstants.frequencies` / :func:`force_constants` (themselves tested against phonopy elsewhere).
Runtime ≈ 20–40 s on 2 shared cores.
"""
import textwrap

import pytest

from forced_devices import run_with_devices

SCRIPT = textwrap.dedent(r"""
    import numpy as np
    import phonjax  # noqa: F401  (x64)
    import jax
    from ase.build import bulk
    from phonjax.born import Born
    from phonjax.force_constants import force_constants
    from phonjax.potentials import rock_salt_potential
    from phonjax.structure import Crystal
    from phonjax.sharding import (ShardingError, device_mesh, sharded_force_constants_batch,
                                  sharded_frequencies)

    assert jax.device_count() == 4, jax.devices()
    mesh = device_mesh()
    pot = rock_salt_potential(4.03, "Li", "F")
    prim = Crystal.from_ase(bulk("LiF", "rocksalt", a=4.03))
    born = Born(np.array([np.eye(3) * 1.05, -np.eye(3) * 1.05]), np.eye(3) * 1.9)
    fc = force_constants(pot, prim, 3).with_born(born)
    rng = np.random.default_rng(0)
    q = np.concatenate([np.zeros((1, 3)), rng.uniform(-0.5, 0.5, (37, 3)), [[0.5, 0.5, 0.0]]])
    worst = 0.0
    for lr in ("none", "gonze"):
        ref, vref = fc.frequencies(q, lr=lr, q_direction=[1.0, 0.3, 0.0], return_eigenvectors=True)
        got, v = sharded_frequencies(fc, q, mesh=mesh, lr=lr, q_direction=[1.0, 0.3, 0.0],
                                     return_eigenvectors=True)
        assert got.shape == ref.shape == (len(q), 6)
        err = np.abs(got - ref).max()
        worst = max(worst, err)
        assert err < 1e-9, (lr, err)
        # eigenvectors agree up to phase / degenerate rotations: compare projectors of non-degenerate modes
        ov = np.abs(np.einsum("qam,qam->qm", np.conj(vref), v))
        nondeg = np.abs(np.diff(ref, axis=1, prepend=-1e9)) > 1e-6
        nondeg &= np.abs(np.diff(ref, axis=1, append=1e9)) > 1e-6
        assert np.all(np.abs(ov[nondeg] - 1) < 1e-8)
    # LO-TO splitting is there (gonze at Γ with a direction): the sharded path carries the NA term
    g = sharded_frequencies(fc, np.zeros((1, 3)), mesh=mesh, q_direction=[1.0, 0.0, 0.0])
    g0 = sharded_frequencies(fc, np.zeros((1, 3)), mesh=mesh)
    assert g[0, -1] - g0[0, -1] > 0.1, (g, g0)
    # cm-1 and 2 of 4 devices
    sub = device_mesh(jax.devices()[:2])
    c = sharded_frequencies(fc, q[:5], mesh=sub, lr="none", unit="cm-1")
    assert np.allclose(c, fc.frequencies(q[:5], lr="none", unit="cm-1"), atol=1e-8)

    # batched force constants: 5 rattled structures over 4 devices (batch padded to 8)
    structs = []
    for k in range(5):
        a = bulk("LiF", "rocksalt", a=4.03)
        a.positions += np.random.default_rng(k).normal(0, 0.02, a.positions.shape)
        structs.append(Crystal.from_ase(a))
    out = sharded_force_constants_batch(pot, structs, 2, mesh=mesh)
    fworst = 0.0
    for s, f in zip(structs, out):
        r = force_constants(pot, s, 2)
        fworst = max(fworst, np.abs(f.fc - r.fc).max())
        assert np.abs(f.fc).max() > 1.0
    assert fworst < 1e-10, fworst
    out = sharded_force_constants_batch(pot, structs[:3], 2, mesh=mesh, mode="linearize", chunk_size=4)
    assert all(np.abs(o.fc - force_constants(pot, s, 2).fc).max() < 1e-10 for o, s in zip(out, structs[:3]))
    for bad in (dict(mode="hessian"),):
        try:
            sharded_force_constants_batch(pot, structs, 2, mesh=mesh, **bad)
        except ShardingError:
            pass
        else:
            raise AssertionError("expected ShardingError")
    # mixed supercell sizes: one sharded group per shape
    mixed = sharded_force_constants_batch(pot, structs[:2], [2, 3], mesh=mesh)
    assert mixed[1].fc.shape == (2, 54, 3, 3)
    assert np.abs(mixed[1].fc - force_constants(pot, structs[1], 3).fc).max() < 1e-10
    print(f"OK freq {worst:.2e} fc {fworst:.2e}")
""")


def test_sharded_equals_single_device():
    last = run_with_devices(SCRIPT, 4, timeout=300)
