"""SevenNet-0 in phonjax: parity with sevenn's own torch model (external reference).

References: ``sevenn.calculator.SevenNetCalculator`` (float32, exactly as users run it) and a float64 copy
of the same torch model (``phonjax.convert.sevennet_torch.torch_energy_forces_stress``, checked against the calculator);
Hessians by torch double autograd of E(positions).
Structures: LiF rock salt (a = 4.0625 Å), a rattled LiF 3×3×3 supercell (54 atoms, seed 7), and a
triclinic five-species crystal (K, Mg, Al, Si, O; seed 3), plus fast unit tests of the variants.
Bounds: float32 |ΔE|/atom ≤ 1e-5 eV, |ΔF| ≤ 1e-5 eV/Å, |Δσ| ≤ 1e-6 eV/Å³; float64 |ΔE|/atom, |ΔF|, |Δσ| ≤ 1e-9,
|ΔH| ≤ 1e-8 eV/Å².
Measured: float32 |ΔE|/atom ≤ 5.2e-7, |ΔF| ≤ 1.6e-6; float64 |ΔE|/atom ≤ 3e-15, |ΔF| ≤ 5e-15, |ΔH| 2e-14.
Runtime ≈ 2.5 min on 2 busy cores (one conversion; one jit compilation per dtype via shared graph capacities;
the torch float64 Hessian of the 8-atom crystal is the slowest test, ≈ 55 s).
"""
import warnings

import numpy as np
import pytest

pytest.importorskip("sevenn")
pytest.importorskip("torch")

import phonjax  # noqa: F401,E402
from ase import Atoms  # noqa: E402
from ase.build import bulk  # noqa: E402

from phonjax.convert.sevennet import (ConversionError, UnsupportedFeature, architecture, convert_sevennet,  # noqa: E402
                                      default_checkpoint, from_checkpoint, read_checkpoint)
from phonjax.convert.sevennet_torch import torch_energy_forces_stress, torch_model_as  # noqa: E402

TOL32_E, TOL32_F, TOL32_S = 1e-5, 1e-5, 1e-6
TOL64_E, TOL64_F, TOL64_S, TOL64_H = 1e-9, 1e-9, 1e-9, 1e-8
CAPS = dict(n_nodes=64, n_edges=4096)  # one padded graph shape for every structure → one compilation


# -- structures ------------------------------------------------------------------------------------
def lif_primitive() -> Atoms:
    return bulk("LiF", "rocksalt", a=4.0625)


def lif_rattled(seed: int = 7) -> Atoms:
    a = bulk("LiF", "rocksalt", a=4.0625).repeat((3, 3, 3))
    a.positions += np.random.default_rng(seed).normal(0.0, 0.06, a.positions.shape)
    return a


def triclinic_multi(seed: int = 3) -> Atoms:
    """K Mg Al Si O in a skewed cell, random positions ≥ 2.2 Å apart (no symmetry)."""
    rng = np.random.default_rng(seed)
    cell = np.array([[5.2, 0.0, 0.0], [0.9, 5.0, 0.0], [-0.6, 0.8, 5.5]])
    syms = ["K", "Mg", "Al", "Si", "O", "O", "O", "O"]
    frac = []
    while len(frac) < len(syms):
        f = rng.random(3)
        ok = True
        for g in frac:
            d = f - g
            d -= np.round(d)
            if np.linalg.norm(d @ cell) < 2.2:
                ok = False
        if ok:
            frac.append(f)
    return Atoms(syms, scaled_positions=np.array(frac), cell=cell, pbc=True)


STRUCTURES = {"LiF-prim": lif_primitive, "LiF-3x3x3-rattled": lif_rattled, "triclinic-KMgAlSiO": triclinic_multi}


# -- references ------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def _torch_float32_default():
    """sevenn builds its modules in torch's default dtype: run this module under float32 (as users do),
    whatever earlier tests (nequip's set_global_state sets float64) left behind."""
    torch = pytest.importorskip("torch")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(scope="module")
def calc():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sevenn.calculator import SevenNetCalculator

        return SevenNetCalculator(str(default_checkpoint()), device="cpu")


@pytest.fixture(scope="module")
def ck():
    """SevenNet-0 read once: architecture, weights and the torch model sevenn builds from it."""
    return read_checkpoint(default_checkpoint())


def calc_reference(calc, atoms):
    """SevenNetCalculator float32: E (eV), F (n, 3), stress (3, 3) in ASE's convention."""
    a = atoms.copy()
    a.calc = calc
    return a.get_potential_energy(), a.get_forces(), a.get_stress(voigt=False)


def torch_hessian(torch_model, atoms):
    """d²E/dr² (3n, 3n) eV/Å² by torch double autograd through sevenn's graph (edge vectors from positions)."""
    import torch
    import sevenn._keys as KEY
    import sevenn.util as su
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import unlabeled_atoms_to_graph

    m = torch_model_as(torch_model, "float64")
    m.delete_module_by_key("force_output")
    m.set_is_batch_data(False)
    m.key_grad = None
    d = unlabeled_atoms_to_graph(atoms, float(m.cutoff), with_shift=True)
    src, dst = d[KEY.EDGE_IDX]
    shift_cart = torch.tensor(np.asarray(d[KEY.CELL_SHIFT], float) @ atoms.cell.array, dtype=torch.float64)

    def energy(pos_flat):
        pos = pos_flat.reshape(-1, 3)
        dd = {k: (v if k == KEY.INFO else su.dtype_correct(v, float_dtype=torch.float64)) for k, v in d.items()}
        dd[KEY.EDGE_VEC] = pos[dst] - pos[src] + shift_cart
        return m(AtomGraphData(**dd))[KEY.PRED_TOTAL_ENERGY].reshape(())

    x = torch.tensor(atoms.positions.reshape(-1), dtype=torch.float64)
    return torch.autograd.functional.hessian(energy, x).numpy()


# -- converted models --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def converted(tmp_path_factory, ck):
    """SevenNet-0 converted once (float32, written and read back), plus a float64 copy."""
    from phonjax.models import load_model

    out = tmp_path_factory.mktemp("sevennet") / "sevennet-0"
    m32 = convert_sevennet(default_checkpoint(), out=out)
    loaded = load_model(out)
    m64 = from_checkpoint(ck, "float64")
    return {"float32": loaded, "float64": m64, "returned": m32, "dir": out}


def _errors(ref, got, n):
    (E, F, S), (e, f, s) = ref, got
    return dict(E=abs(E - e) / n, F=float(np.abs(F - f).max()), S=float(np.abs(S - s).max()))


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_parity_float32_against_sevennet_calculator(calc, converted, name):
    atoms = STRUCTURES[name]()
    model = converted["float32"]
    ref = calc_reference(calc, atoms)
    got = model.energy_forces_stress(atoms, graph=model.graph(atoms, **CAPS))
    err = _errors(ref, got, len(atoms))
    print(f"float32 {name} n={len(atoms)} E={ref[0]:.6f} " + " ".join(f"|Δ{k}|={v:.2e}" for k, v in err.items()))
    assert err["E"] <= TOL32_E and err["F"] <= TOL32_F and err["S"] <= TOL32_S
    # the forces are not trivially zero (the comparison has teeth)
    if name != "LiF-prim":
        assert np.abs(ref[1]).max() > 0.05


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_parity_float64_against_torch_double(calc, ck, converted, name):
    atoms = STRUCTURES[name]()
    model = converted["float64"]
    ref = torch_energy_forces_stress(ck.torch_model, atoms, "float64")
    # the float64 torch reference is the calculator's model: agrees with the float32 calculator
    ref32 = calc_reference(calc, atoms)
    assert _errors(ref32, ref, len(atoms))["F"] < 1e-4
    got = model.energy_forces_stress(atoms, graph=model.graph(atoms, **CAPS))
    err = _errors(ref, got, len(atoms))
    print(f"float64 {name} n={len(atoms)} " + " ".join(f"|Δ{k}|={v:.2e}" for k, v in err.items()))
    assert err["E"] <= TOL64_E and err["F"] <= TOL64_F and err["S"] <= TOL64_S


def jax_hessian(model, atoms):
    """d²E/dr² (3n, 3n) of a phonjax model, one Hessian-vector product at a time (bounded memory)."""
    import jax
    import jax.numpy as jnp

    f = model.bind(atoms)  # default (small) graph capacity: 3n Hessian-vector products are cheap
    cell = jnp.asarray(atoms.cell.array)
    x0 = jnp.asarray(atoms.positions)
    grad = jax.grad(lambda x: f(x, cell))
    n = len(atoms)
    eye = jnp.eye(3 * n).reshape(3 * n, n, 3)
    return np.asarray(jax.lax.map(lambda v: jax.jvp(grad, (x0,), (v,))[1], eye)).reshape(3 * n, 3 * n)


def test_hessian_float64_against_torch(ck, converted):
    name = "triclinic-KMgAlSiO"
    atoms = STRUCTURES[name]()
    H_t = torch_hessian(ck.torch_model, atoms)
    H_j = jax_hessian(converted["float64"], atoms)
    err = float(np.abs(H_t - H_j).max())
    print(f"hessian {name} max|H|={np.abs(H_t).max():.3f} |ΔH|={err:.2e}")
    assert err <= TOL64_H


# -- architecture and metadata -------------------------------------------------------------------
def test_architecture_of_sevennet0(ck):
    a = ck.arch
    assert a["r_max"] == 5.0 and a["r_on"] == 4.5 and a["num_layers"] == 5
    assert a["sh_irreps"] == "1x0e+1x1e+1x2e"
    assert a["hidden_irreps"] == ("128x0e+64x1e+32x2e",) * 4 + ("128x0e",)
    assert a["radial_dims"][0] == (8, 64, 64, 384) and a["readout_dims"] == (128, 64, 1)
    assert len(a["type_names"]) == 89 and list(a["type_names"]) == sorted(a["type_names"])
    assert abs(a["avg_num_neigh"][0] - 35.98957443237305) < 1e-12
    # sevenn's own type map: element → one-hot index
    from ase.data import atomic_numbers

    tm = ck.torch_model.type_map
    assert all(tm[atomic_numbers[s]] == i for i, s in enumerate(a["type_names"]))


def test_saved_model_metadata_and_size(ck, converted):
    import json

    m = converted["float32"]
    meta = json.loads((converted["dir"] / "metadata.json").read_text())
    assert meta["source"] == "sevennet" and meta["checkpoint_version"] == "0.9.1"
    assert len(meta["source_sha256"]) == 64
    assert m.config.dtype == "float32" and m.r_max == 5.0
    # every torch parameter is mapped, except the 5 message denominators (config.avg_num_neighbors)
    torch_params = sum(p.numel() for p in ck.torch_model.parameters())
    assert m.n_params() == torch_params - 5, (m.n_params(), torch_params)
    assert m.config.avg_num_neighbors == float(ck.torch_model._modules["0_convolution"].denominator)


# -- bad input -------------------------------------------------------------------------------------
def test_missing_and_garbage_checkpoints(tmp_path):
    with pytest.raises(ConversionError, match="no such file"):
        convert_sevennet(tmp_path / "nope.pth", out=tmp_path / "out")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConversionError, match="not a readable SevenNet checkpoint"):
        convert_sevennet(junk, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unsupported_architecture_is_named(ck):
    import copy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sevenn.model_build import build_E3_equivariant_model

    cfg = copy.deepcopy(ck.config)
    cfg["self_connection_type"] = "nequip"
    cfg["num_convolution_layer"] = 1
    cfg["irreps_manual"] = ["128x0e", "128x0e"]
    cfg["conv_denominator"] = [35.99]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = build_E3_equivariant_model(cfg)
    with pytest.raises(UnsupportedFeature, match="self_connection_type"):
        architecture(m, cfg)


# -- the SevenNet variants on their own (fast) ----------------------------------------------------------
def test_variant_fields_validated():
    from phonjax.models.nequip.model import ModelConfig

    base = dict(type_names=("Li", "F"), r_max=5.0, feature_irreps_hidden=("8x0e+4x1e", "8x0e"),
                radial_mlp_depth=(2, 2), radial_mlp_width=(8, 8), avg_num_neighbors=20.0,
                irreps_edge_sh="1x0e+1x1e+1x2e", parity_labels="all_even", cutoff="xplor", cutoff_on=4.5)
    ModelConfig(**base)
    with pytest.raises(UnsupportedFeature, match="radial_mlp"):
        ModelConfig(**dict(base, radial_mlp="mace"))
    with pytest.raises(ValueError, match="cutoff_on"):
        ModelConfig(**dict(base, cutoff_on=None))
    with pytest.raises(ValueError, match="cutoff_on"):
        ModelConfig(**dict(base, cutoff_on=5.5))
    with pytest.raises(ValueError, match="irreps_edge_sh"):
        ModelConfig(**dict(base, irreps_edge_sh="1x0e+1x1o+1x2e"))
    with pytest.raises(ValueError, match="cutoff_on"):
        ModelConfig(**dict(base, cutoff="polynomial"))


def test_xplor_cutoff_is_c1_switch():
    import jax
    import jax.numpy as jnp

    from phonjax.models.nequip.nn.radial import xplor_cutoff

    r_on, r_c = 4.5, 5.0
    f = lambda r: xplor_cutoff(r, r_on, r_c)  # noqa: E731
    df = jax.vmap(jax.grad(f))
    r = jnp.linspace(0.5, 5.5, 2001)
    v = np.asarray(f(r))
    assert np.all(v[np.asarray(r) < r_on] == 1.0) and np.all(v[np.asarray(r) >= r_c] == 0.0)
    assert np.all(np.diff(v) <= 1e-15)  # monotone
    for x in (r_on, r_c):
        d = np.asarray(df(jnp.asarray([x - 1e-7, x + 1e-7])))
        assert np.abs(d).max() < 1e-5, (x, d)
    # against sevenn's own module
    import torch
    from sevenn.nn.edge_embedding import XPLORCutoff

    t = XPLORCutoff(r_c, r_on)(torch.tensor(np.asarray(r[r < r_c]), dtype=torch.float64)).numpy()
    assert np.abs(t - v[np.asarray(r) < r_c]).max() < 1e-14


def test_fcnet_matches_e3nn_fully_connected_net():
    import jax.numpy as jnp
    import torch
    from e3nn.nn import FullyConnectedNet

    from phonjax.models.nequip.nn.radial import fcnet_apply

    torch.manual_seed(0)
    net = FullyConnectedNet([8, 16, 16, 7], torch.nn.functional.silu).double()
    x = torch.randn(11, 8, dtype=torch.float64)
    ref = net(x).detach().numpy()
    ws = [jnp.asarray(getattr(net, f"layer{k}").weight.detach().numpy()) for k in range(3)]
    got = np.asarray(fcnet_apply(ws, jnp.asarray(x.numpy()), "silu"))
    assert np.abs(ref - got).max() < 1e-13
