"""Autodiff force constants vs jax.hessian and finite differences; Eq. 2 / ASR; batching; recompilation."""
import numpy as np
import pytest
from ase.build import bulk

import jax
import jax.numpy as jnp

import phonjax  # noqa: F401
from phonjax.force_constants import (ForceConstantsError, apply_asr, asr_violation, force_constants,
                                     force_constants_batch, permutation_violation, symmetrize_fc)
from phonjax.potentials import rock_salt_potential
from phonjax.structure import Crystal, make_supercell
from phonjax.testing import count_compilations, fd_step_sweep


def nacl():
    return bulk("NaCl", "rocksalt", a=5.64)


def low_symmetry(seed=3):
    """P1 NaCl-like cell: strained triclinic lattice, displaced atoms, 4 atoms."""
    rng = np.random.default_rng(seed)
    at = bulk("NaCl", "rocksalt", a=5.64) * (2, 1, 1)
    at.set_cell(at.cell.array @ (np.eye(3) + 0.03 * rng.standard_normal((3, 3))), scale_atoms=True)
    at.positions += 0.08 * rng.standard_normal(at.positions.shape)
    return at


POT = rock_salt_potential(5.64, "Na", "Cl")
POT_PLAIN = rock_salt_potential(5.64, "Na", "Cl", image_range=3)


def plain_energy(positions, cell, numbers):
    """Interface (b): a plain callable (dense sum over explicit images; the cell is traced)."""
    return POT_PLAIN(positions, cell, numbers)


@pytest.mark.parametrize("atoms_fn", [nacl, low_symmetry])
def test_modes_agree_with_hessian(atoms_fn):
    at = atoms_fn()
    M = 2 if len(at) == 2 else np.array([[1, 0, 0], [0, 2, 0], [1, 0, 2]])
    kw = dict(symmetrize=False, asr=None)
    ref = force_constants(POT, at, M, mode="hessian", **kw).fc
    scale = np.abs(ref).max()
    for mode, chunk in [("jvp", None), ("linearize", None), ("jvp", 4), ("linearize", 5)]:
        fc = force_constants(POT, at, M, mode=mode, chunk_size=chunk, **kw).fc
        assert np.abs(fc - ref).max() <= 1e-12 * scale, (mode, chunk)
    # bound interface (jax Partial from bind) gives the same
    fcb = force_constants(_Bound(), at, M, **kw)
    assert np.abs(fcb.fc - ref).max() <= 1e-12 * scale
    fcp = force_constants(plain_energy, at, M, **kw)  # independent implementation of the same energy
    assert np.abs(fcp.fc - ref).max() <= 1e-10 * scale


class _Bound:
    def bind(self, crystal):
        return POT.bind(crystal)


def test_finite_differences_step_sweep():
    at = low_symmetry()
    sc = make_supercell(Crystal.from_ase(at), 2)
    fc = force_constants(POT, at, sc, symmetrize=False, asr=None)
    e = lambda x, c: POT(x, np.asarray(sc.crystal.cell), sc.crystal.numbers)  # noqa: E731
    sweep = fd_step_sweep(e, sc.crystal.positions, sc.crystal.cell, range(4), fc.fc,
                          steps=(1e-2, 3e-3, 1e-3, 3e-4))
    assert min(sweep.values()) <= 1e-6, sweep
    assert sweep[1e-2] > min(sweep.values())  # the sweep sees the O(h²) error: the check can fail


def test_symmetry_reduced_rows():
    fc_full = force_constants(POT, nacl(), 3, symmetry=False)
    fc_sym = force_constants(POT, nacl(), 3)  # symmetry reduction is the default
    assert fc_sym.report.n_hvp == 2 and fc_full.report.n_hvp == 6
    assert np.abs(fc_sym.fc - fc_full.fc).max() < 1e-10


def test_asr_and_permutation_symmetry():
    at = low_symmetry()
    fc0 = force_constants(POT, at, 2, symmetrize=False, asr=None)
    sc = fc0.supercell
    rng = np.random.default_rng(0)
    noisy = fc0.fc + 1e-3 * rng.standard_normal(fc0.fc.shape)
    assert asr_violation(noisy) > 1e-3 and permutation_violation(noisy, sc) > 1e-3
    sym = symmetrize_fc(noisy, sc)
    assert permutation_violation(sym, sc) < 1e-14
    assert np.abs(sym - fc0.fc).max() < 6e-3
    for kind in ("phonopy", "simple"):
        out = apply_asr(sym, sc, kind)
        assert asr_violation(out) < 1e-13, kind
    ph = apply_asr(sym, sc, "phonopy")
    assert permutation_violation(ph, sc) < 0.1 * permutation_violation(noisy, sc)
    # exact Hessian: Eq. 2 and ASR already hold to rounding; the report says so
    rep = force_constants(POT, at, 2).report
    assert rep.asr_before < 1e-12 and rep.asr_after < 1e-12 and rep.perm_before < 1e-12
    assert rep.symmetrized and rep.asr == "phonopy"


def test_batch_matches_single_and_no_recompilation():
    rng = np.random.default_rng(1)
    structs = []
    for k in range(3):
        at = nacl()
        at.positions += 0.03 * rng.standard_normal(at.positions.shape)
        structs.append(at)
    singles = [force_constants(POT, s, 2).fc for s in structs]
    batch = force_constants_batch(POT, structs, 2)
    for a, b in zip(singles, batch):
        assert np.abs(a - b.fc).max() < 1e-12
    sizes = force_constants_batch(POT, [nacl(), nacl()], [2, 3])
    assert sizes[0].fc.shape == (2, 16, 3, 3) and sizes[1].fc.shape == (2, 54, 3, 3)
    # a second structure of the same shape: no new compilation (plain energy_fn and bound Partial)
    for model in (POT, _Bound(), plain_energy):
        force_constants(model, structs[0], 2)
        with count_compilations() as c:
            force_constants(model, structs[1], 2)
        assert c.count == 0


def test_q_list_length_within_bucket_does_not_recompile():
    fc = force_constants(POT, nacl(), 2)
    fc.frequencies(np.zeros((5, 3)))
    with count_compilations() as c:
        fc.frequencies(np.random.default_rng(0).uniform(size=(11, 3)))
    assert c.count == 0
    # a second structure of the same shape (another lattice constant): C(q) and eigh kernels are reused
    fc2 = force_constants(POT, bulk("NaCl", "rocksalt", a=5.5), 2)
    with count_compilations() as c:
        fc2.frequencies(np.zeros((9, 3)))
    assert c.count == 0
    with count_compilations() as c:  # a counter that cannot see anything would pass everything: check it counts
        jax.jit(lambda x: jnp.sin(x) * 3.0)(jnp.ones(7))
    assert c.count >= 1


def test_bad_input():
    with pytest.raises(ValueError, match="singular"):
        force_constants(POT, nacl(), np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]]))
    with pytest.raises(ForceConstantsError, match="mode"):
        force_constants(POT, nacl(), 2, mode="fd")
    with pytest.raises(ForceConstantsError, match="chunk_size"):
        force_constants(POT, nacl(), 2, chunk_size=0)
    with pytest.raises(ForceConstantsError, match="ASR"):
        force_constants(POT, nacl(), 2, asr="crystal")
    with pytest.raises(ForceConstantsError):
        force_constants(object(), nacl(), 2)


def test_small_nequip_model_matches_hessian_and_fd():
    model_mod = pytest.importorskip("phonjax.models.nequip.model")
    from phonjax.models.nequip.nn.config import ModelConfig

    cfg = ModelConfig(type_names=("Li", "F"), r_max=3.2, feature_irreps_hidden=("4x0e+4x1o", "4x0e"),
                      radial_mlp_depth=(1, 1), radial_mlp_width=(8, 8), avg_num_neighbors=8.0,
                      irreps_edge_sh="1x0e+1x1o+1x2e", type_embed_num_features=4, dtype="float64")
    model = model_mod.Model.init(cfg, seed=0)
    at = bulk("LiF", "rocksalt", a=4.03)
    at.positions += 0.05 * np.random.default_rng(2).standard_normal(at.positions.shape)
    sc = make_supercell(Crystal.from_ase(at), (1, 1, 2))
    # the (1, 1, 2) cell is deliberately smaller than the cutoff sphere: the Hessian of that periodic cell
    with pytest.raises(ForceConstantsError, match="cutoff sphere"):
        force_constants(model, at, sc)
    fc_jvp = force_constants(model, at, sc, symmetrize=False, asr=None, allow_small_supercell=True)
    fc_h = force_constants(model, at, sc, mode="hessian", symmetrize=False, asr=None, allow_small_supercell=True)
    scale = np.abs(fc_h.fc).max()
    assert scale > 0
    assert np.abs(fc_jvp.fc - fc_h.fc).max() <= 1e-10 * scale
    # a second structure of the same shape reuses the compiled kernel (the Model's params/graph are leaves)
    at2 = at.copy()
    at2.positions += 0.01
    with count_compilations() as c:
        force_constants(model, at2, (1, 1, 2), symmetrize=False, asr=None, allow_small_supercell=True)
    assert c.count == 0
    energy = model.bind(sc.crystal)
    sweep = fd_step_sweep(energy, sc.crystal.positions, sc.crystal.cell, range(2), fc_jvp.fc,
                          steps=(1e-2, 1e-3, 3e-4))
    assert min(sweep.values()) <= 1e-6, sweep
