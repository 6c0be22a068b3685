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


HVP_SCRIPT = textwrap.dedent(r"""
    import numpy as np
    import phonjax  # noqa: F401  (x64)
    import jax
    from ase.build import bulk
    from phonjax.force_constants import force_constants
    from phonjax.models.nequip.model import Model
    from phonjax.models.nequip.nn.config import ModelConfig
    from phonjax.potentials import rock_salt_potential
    from phonjax.predict_many import predict_many
    from phonjax.testing import count_compilations

    OUT = None
    assert jax.device_count() == 4
    cfg = ModelConfig(type_names=("Li", "F"), r_max=3.2, feature_irreps_hidden=("4x0e+2x1o", "4x0e"),
                      radial_mlp_depth=(1, 1), radial_mlp_width=(8, 8), avg_num_neighbors=8.0,
                      irreps_edge_sh="1x0e+1x1o", type_embed_num_features=4, dtype="float64")
    model = Model.init(cfg, seed=3)
    at = bulk("LiF", "rocksalt", a=4.03)
    at.positions += 0.04 * np.random.default_rng(5).standard_normal(at.positions.shape)
    kw = dict(symmetry=False, allow_small_supercell=True)
    ref = force_constants(model, at, 2, chunk_size=None, edge_chunk=0, mesh=None, **kw)
    assert ref.report.n_devices == 1 and np.abs(ref.fc).max() > 1.0
    # default: the six directions split over the four devices (padded to eight)
    auto = force_constants(model, at, 2, **kw)
    assert auto.report.n_devices == 4, auto.report
    worst = np.abs(auto.fc - ref.fc).max()
    # a forced small budget: per-device chunks of one direction, edge chunks, still the same numbers
    small = force_constants(model, at, 2, memory_budget=2**20, **kw)
    assert small.report.chunk_size == 1 and small.report.n_devices == 4, small.report
    worst = max(worst, np.abs(small.fc - ref.fc).max())
    # progress batches of chunk_size × devices; the site-symmetry plan
    seen = []
    prog = force_constants(model, at, 2, chunk_size=1, progress=lambda d, t: seen.append((d, t)), **kw)
    assert seen == [(0, 6), (4, 6), (6, 6)], seen
    worst = max(worst, np.abs(prog.fc - ref.fc).max())
    assert worst < 1e-10, worst
    sym_ref = force_constants(model, bulk("LiF", "rocksalt", a=4.03), 2, mesh=None, allow_small_supercell=True)
    sym = force_constants(model, bulk("LiF", "rocksalt", a=4.03), 2, allow_small_supercell=True)
    assert np.abs(sym.fc - sym_ref.fc).max() < 1e-10
    # a second structure of the same shape: no new compilation
    at2 = at.copy()
    at2.positions += 0.01
    with count_compilations() as n:
        force_constants(model, at2, 2, **kw)
    assert n.count == 0, n.count
    # many structures per run: force constants sharded over the devices, recorded in summary.json
    pot = rock_salt_potential(4.03, "Li", "F")
    bulk("LiF", "rocksalt", a=4.08).write(OUT + ".cif")
    res = predict_many([OUT + ".cif"], pot, 2, out_dir=OUT, npoints=3, lr="none",
                       allow_small_supercell=True, progress=False)
    assert [r["status"] for r in res.records] == ["ok"], res.records
    print(f"OK {worst:.2e}")
""")


def test_force_constants_split_over_devices(tmp_path):
    """One structure's Hessian-vector products split over 4 devices equal the one-device ones (float64), with the
    memory plan per device, progress batches and site symmetry; predict_many on 4 devices
    writes the same band structure as a one-device predict and records the device count."""
    import json
    from ase.build import bulk
    import numpy as np
    from phonjax.io.band_yaml import read_band_yaml
    from phonjax.potentials import rock_salt_potential
    from phonjax.predict import predict

    out = tmp_path / "many"
    run_with_devices(HVP_SCRIPT.replace("OUT = None", f"OUT = {str(out)!r}"), 4, timeout=400)
    summary = json.loads((out / "many" / "summary.json").read_text())
    assert summary["force_constants"]["n_devices"] == 4
    single = predict(bulk("LiF", "rocksalt", a=4.08), rock_salt_potential(4.03, "Li", "F"), 2,
                     out_dir=tmp_path / "single", npoints=3, lr="none", allow_small_supercell=True, progress=False)
    assert single.force_constants.report.n_devices == 1
    got = read_band_yaml(out / "many" / "band.yaml").frequencies
    want = read_band_yaml(tmp_path / "single" / "band.yaml").frequencies
    real = np.abs(want) > 0.01  # the acoustic zeros at Γ are √(rounding) and differ by ~1e-7 THz
    assert got.shape == want.shape and real.sum() > 10
    assert np.abs(got - want)[real].max() < 1e-9 and np.abs(got - want).max() < 1e-6
