"""The JAX NequIP model on its own (no torch): equivariance, forces = −∇E and stress = ∂E/∂ε by finite
differences, smoothness at the cutoff, extensivity, batching, no recompilation for same-bucket inputs,
save/load round trip and bad input. Runtime ≈ 1 min on 2 cores."""
import json

import jax
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

import phonjax  # noqa: F401
from phonjax.calculator import Calculator
from phonjax.graph import GraphError, build_graph, pad_positions
from phonjax.models import load_model
from phonjax.models.nequip.model import (Model, ModelConfig, ModelLoadError, UnknownSpeciesError, UnsupportedFeature,
                                         _energy_forces_stress, graph_energies)
from phonjax.structure import Crystal
from phonjax.testing_equivariance import assert_equivariant

CFG = ModelConfig(type_names=("Li", "F", "Mg"), r_max=3.6, irreps_edge_sh="1x0e+1x1o+1x2e",
                  feature_irreps_hidden=("6x0e+3x1o+2x1e+2x2e", "6x0e"), radial_mlp_depth=(1, 1),
                  radial_mlp_width=(8, 8), avg_num_neighbors=12.0, type_embed_num_features=6,
                  bessel_trainable=True, polynomial_cutoff_p=5.0, per_type_energy_scales=(1.3, 0.8, 1.1),
                  per_type_energy_shifts=(-1.0, -2.0, -3.0), zbl=True)


@pytest.fixture(scope="module")
def model():
    m = Model.init(CFG, seed=1)
    # make the random weights larger so that every path matters
    params = jax.tree_util.tree_map(lambda x: x * 1.5 if x.ndim == 1 and x.shape[0] > 3 else x, m.params)
    return Model(CFG, params, {})


def _crystal():
    rng = np.random.default_rng(0)
    cell = np.array([[3.9, 0.2, -0.1], [0.3, 4.1, 0.2], [-0.2, 0.4, 4.3]])
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0.1], [0.3, 0.7, 0.5], [0.8, 0.2, 0.6]]) + rng.normal(0, 0.02, (4, 3))
    return Crystal(cell, frac @ cell, [3, 9, 12, 9])


CAPS = dict(n_nodes=16, n_edges=512)


def test_equivariance(model):
    def fn(c):
        e, f, s = model.energy_forces_stress(c, graph=model.graph(c, **CAPS))
        return {"energy": e, "forces": f, "stress": s}

    assert_equivariant(fn, _crystal(), {"energy": "scalar", "forces": "vector", "stress": "tensor"}, atol=1e-10)


def test_forces_and_stress_match_finite_differences(model):
    c = _crystal()
    f = model.bind(c, **CAPS)
    e, F, S = model.energy_forces_stress(c, graph=model.graph(c, **CAPS))
    assert abs(float(f(c.positions, c.cell)) - e) < 1e-12
    h = 1e-5
    fd = np.zeros_like(F)
    for i in range(c.n_atoms):
        for a in range(3):
            d = np.zeros_like(c.positions)
            d[i, a] = h
            fd[i, a] = -(f(c.positions + d, c.cell) - f(c.positions - d, c.cell)) / (2 * h)
    np.testing.assert_allclose(F, fd, atol=1e-7)
    # stress: σ = (1/V) ∂E/∂ε for symmetric strain of positions and cell
    fs = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            eps = np.zeros((3, 3))
            eps[a, b] = eps[b, a] = h / 2 if a != b else h
            ep = f(c.positions @ (np.eye(3) + eps), c.cell @ (np.eye(3) + eps))
            em = f(c.positions @ (np.eye(3) - eps), c.cell @ (np.eye(3) - eps))
            fs[a, b] = (ep - em) / (2 * h) / c.volume
    np.testing.assert_allclose(S, fs, atol=1e-8)
    # Hessian is symmetric and finite (padded edges are safe)
    H = np.asarray(jax.hessian(f)(c.positions, c.cell)).reshape(12, 12)
    assert np.all(np.isfinite(H)) and np.allclose(H, H.T, atol=1e-10)


def test_smooth_at_cutoff(model):
    """A dimer: energy and force go continuously to the isolated-atom values at r_max."""
    def dimer(r):
        return Atoms("LiF", positions=[[0, 0, 0], [r, 0, 0]], cell=np.eye(3) * 20, pbc=True)

    caps = dict(n_nodes=16, n_edges=16)
    e_far, _, _ = model.energy_forces_stress(dimer(CFG.r_max + 0.5), graph=model.graph(dimer(CFG.r_max + 0.5), **caps))
    shifts = -1.0 - 2.0  # isolated atoms: per-type shifts only (e_i of a lone atom is 0·scale + shift)
    assert abs(e_far - shifts) < 1e-12
    prev = None
    for d in (1e-1, 3e-2, 1e-2, 3e-3):
        a = dimer(CFG.r_max - d)
        e, F, _ = model.energy_forces_stress(a, graph=model.graph(a, **caps))
        de, df = abs(e - e_far), float(np.abs(F).max())
        if prev is not None:
            assert de <= prev[0] * 0.3 + 1e-14 and df <= prev[1] * 0.5 + 1e-14
        prev = (de, df)
    assert prev[0] < 1e-8 and prev[1] < 1e-5


def test_extensive_and_batched(model):
    c = _crystal()
    e1, _, _ = model.energy_forces_stress(c)
    sc = c.to_ase().repeat((2, 1, 2))
    e4, _, _ = model.energy_forces_stress(sc)
    assert abs(e4 - 4 * e1) < 1e-10 * max(1, abs(e4))
    # batch of two different structures in one padded graph = individual energies
    li = bulk("LiF", "rocksalt", a=4.0)
    g = model.graph([c, li], n_graphs=3)
    pos = np.concatenate([c.positions, li.positions])
    cells = np.stack([c.cell, li.cell.array, np.eye(3)])
    E = np.asarray(graph_energies(CFG, model.params, g, pad_positions(pos, g.n_node_capacity), cells))
    e_li, _, _ = model.energy_forces_stress(li)
    np.testing.assert_allclose(E, [e1, e_li, 0.0], atol=1e-10)


@pytest.fixture(scope="module")
def unchunked(model):
    """(inputs, energy, gradient, HVP) with all edges at once: the reference of every chunk size below."""
    c = _crystal()
    f0 = model.bind(c, edge_chunk=0, **CAPS)
    pos, cell = jax.numpy.asarray(c.positions), jax.numpy.asarray(c.cell)
    v = np.random.default_rng(3).normal(size=pos.shape)
    h0 = np.asarray(_hvp(f0, pos, cell, v))
    assert np.abs(h0).max() > 1e-3  # the check is not vacuous
    return (c, pos, cell, v), float(f0(pos, cell)), np.asarray(jax.grad(lambda x: f0(x, cell))(pos)), h0


def _hvp(f, pos, cell, v):
    return jax.jvp(jax.grad(lambda x: f(x, cell)), (pos,), (v,))[1]


@pytest.mark.parametrize("chunk", [7, 64, 10_000])
def test_edge_chunked_messages_equal_unchunked(model, unchunked, chunk):
    """Rematerialised edge chunks (a chunk size that does not divide the edge capacity, one that does, one larger
    than the graph) give the same energy, gradient and Hessian-vector product as all edges at once."""
    (c, pos, cell, v), e0, g0, h0 = unchunked
    fk = model.bind(c, edge_chunk=chunk, **CAPS)
    assert abs(float(fk(pos, cell)) - e0) < 1e-10
    np.testing.assert_allclose(jax.grad(lambda x: fk(x, cell))(pos), g0, atol=1e-10)
    np.testing.assert_allclose(_hvp(fk, pos, cell, v), h0, atol=1e-9)


def test_auto_edge_chunk_scales_with_model_width():
    from phonjax.models.nequip.model import CPU_EDGE_CHUNK_BYTES, EDGE_CHUNK_SIZE, auto_edge_chunk
    from phonjax.models.nequip.nn import irreps as I

    for backend in ("cpu", "gpu"):
        assert auto_edge_chunk(CFG, 100, backend) == 0  # tiny graph: one chunk
        chunk = auto_edge_chunk(CFG, 10**6, backend)
        assert auto_edge_chunk(CFG, chunk, backend) == 0 and auto_edge_chunk(CFG, chunk + 1, backend) == chunk
    assert auto_edge_chunk(CFG, 10**6, "gpu") > EDGE_CHUNK_SIZE  # a narrow model: larger than SevenNet-0's 4096
    # CPU: the largest power of two whose widest float32 messages fit the cache-sized budget
    widest = max(I.dim(I.uvu_mid(L["irreps_in"], CFG.sh_irreps, L["conv_out"])) for L in CFG.layer_irreps())
    chunk = auto_edge_chunk(CFG, 10**6, "cpu")
    assert chunk & (chunk - 1) == 0 and chunk * 4 * widest <= CPU_EDGE_CHUNK_BYTES < 2 * chunk * 4 * widest
    with pytest.raises(ValueError, match="edge_chunk"):
        Model.init(CFG).bind(_crystal(), edge_chunk=-1, **CAPS)
    with pytest.raises(ValueError, match="edge_chunk"):
        Model.init(CFG).bind(_crystal(), edge_chunk=2.5, **CAPS)


def test_calculator_no_recompilation_within_a_bucket(model):
    atoms = bulk("LiF", "rocksalt", a=4.0).repeat((2, 2, 1))
    calc = Calculator(model)
    atoms.calc = calc
    atoms.get_potential_energy()
    n0 = _energy_forces_stress._cache_size()
    for seed in range(3):
        a = atoms.copy()
        a.rattle(0.02, seed=seed)
        a.calc = calc
        f = a.get_forces()
        assert f.shape == (8, 3) and a.get_stress().shape == (6,)
        assert calc.get_property("free_energy", a) == calc.get_property("energy", a)
    assert _energy_forces_stress._cache_size() == n0
    assert abs(atoms.get_potential_energy() - model.energy_forces_stress(atoms)[0]) < 1e-12


def test_save_load_roundtrip_and_errors(model, tmp_path):
    out = model.save(tmp_path / "m")
    m2 = load_model(out)
    assert m2.config == model.config
    c = _crystal()
    assert model.energy_forces_stress(c)[0] == m2.energy_forces_stress(c)[0]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["type_names"] == ["Li", "F", "Mg"]
    with pytest.raises(FileExistsError):
        model.save(out)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="missing"):
        load_model(tmp_path / "empty")
    # corrupt the parameter store
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    for p in (bad / "params").rglob("*"):
        if p.is_file() and p.stat().st_size > 100:
            p.write_bytes(b"garbage")
    with pytest.raises(ModelLoadError):
        load_model(bad)
    # config that does not match the parameters
    bad2 = tmp_path / "bad2"
    shutil.copytree(out, bad2)
    txt = (bad2 / "config.yaml").read_text().replace("type_embed_num_features: 6", "type_embed_num_features: 7")
    (bad2 / "config.yaml").write_text(txt)
    with pytest.raises(ModelLoadError, match="match"):
        load_model(bad2)


def test_bad_input(model):
    with pytest.raises(UnknownSpeciesError, match="Cu"):
        model.energy_forces_stress(bulk("Cu", "fcc", a=3.6))
    close = Atoms("LiF", positions=[[0, 0, 0], [0.2, 0, 0]], cell=np.eye(3) * 6, pbc=True)
    with pytest.raises(GraphError, match="0.3"):
        model.energy_forces_stress(close)
    with pytest.raises(ValueError, match="periodic"):
        model.energy_forces_stress(Atoms("LiF", positions=[[0, 0, 0], [2, 0, 0]], cell=np.eye(3) * 6))
    with pytest.raises(UnsupportedFeature, match="cutoff"):
        CFG.replace(cutoff="cosine")
    with pytest.raises(ValueError, match="dtype"):
        CFG.replace(dtype="float16")
    with pytest.raises(GraphError):
        build_graph([(np.zeros((1, 3)), np.eye(3))], [np.zeros(2)], 3.0)
