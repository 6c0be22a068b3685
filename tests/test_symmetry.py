"""Symmetry-reduced force-constant rows equal the directly computed rows."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from phonjax.structure import Crystal, make_supercell
from phonjax.symmetry import identity_plan, plan_rows, rebuild_rows


def gaussian_pair_energy(numbers, cell, r_cut=9.0, sigma=1.3):
    """E = ½ Σ_{i,j,T} c_ij exp(−|r_j + T − r_i|²/σ²) with species-dependent c_ij; images to r_cut
    (truncation < 1e-20 eV). Symmetric under every operation of the structure."""
    numbers = np.asarray(numbers)
    c = 1.0 + 0.37 * (numbers[:, None] % 7) + 0.21 * (numbers[None, :] % 5)
    c = jnp.asarray(c + c.T)
    n_rep = np.ceil(r_cut / np.min(np.abs(np.linalg.eigvalsh(cell @ cell.T))) ** 0.5).astype(int) + 1
    shifts = jnp.asarray(np.array(list(itertools.product(range(-n_rep, n_rep + 1), repeat=3)), dtype=np.float64))

    def energy(pos):
        T = shifts @ jnp.asarray(cell)
        d = pos[None, :, None, :] + T[None, None, :, :] - pos[:, None, None, :]
        r2 = jnp.sum(d**2, -1)
        self_term = (r2 < 1e-12)
        e = jnp.where(self_term, 0.0, jnp.exp(-jnp.where(self_term, 1.0, r2) / sigma**2))
        return 0.5 * jnp.sum(c[:, :, None] * e)

    return energy


def structures():
    rs = bulk("NaCl", "rocksalt", a=5.0)
    wz = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
    mono = Atoms("Mg2O2", scaled_positions=[[0.1, 0.25, 0.2], [0.9, 0.75, 0.8], [0.3, 0.25, 0.6], [0.7, 0.75, 0.4]],
                 cell=[[3.1, 0, 0], [0, 3.4, 0], [-0.7, 0, 3.6]], pbc=True)
    tri = Atoms("LiFNa", scaled_positions=[[0.0, 0.0, 0.0], [0.45, 0.3, 0.55], [0.2, 0.7, 0.35]],
                cell=[[3.0, 0.2, 0.1], [0.4, 3.3, 0.2], [0.3, -0.5, 3.5]], pbc=True)
    return {"rocksalt": (rs, 2), "wurtzite": (wz, 2), "monoclinic": (mono, 2), "triclinic": (tri, 2)}


@pytest.mark.parametrize("name", ["rocksalt", "wurtzite", "monoclinic", "triclinic"])
def test_reduced_rows_equal_full_rows(name):
    atoms, n = structures()[name]
    sc = make_supercell(Crystal.from_ase(atoms), n)
    crys = sc.crystal
    energy = gaussian_pair_energy(crys.numbers, crys.cell)
    pos = jnp.asarray(crys.positions)
    n_prim = sc.primitive.n_atoms
    hess = np.asarray(jax.hessian(energy)(pos))  # (N, 3, N, 3)
    fc_full = hess[:n_prim].transpose(0, 2, 1, 3)  # (n_prim, N, a, b)

    plan = plan_rows(sc)
    grad = jax.grad(energy)
    hvps = np.stack([np.asarray(jax.jvp(grad, (pos,), (jnp.zeros_like(pos).at[i].set(v),))[1])
                     for i, v in zip(plan.atoms, plan.directions)])
    fc_red = rebuild_rows(plan, hvps)
    scale = np.abs(fc_full).max()
    assert np.abs(fc_red - fc_full).max() <= 1e-8 * max(scale, 1.0)
    if name == "rocksalt":
        assert plan.n_hvp == 2
    if name == "triclinic":
        assert plan.n_hvp == 3 * n_prim  # P1 / P-1 without site symmetry: nothing to gain, nothing lost
    # the plain plan gives the same rows
    ident = identity_plan(n_prim)
    hv = hess[:n_prim].reshape(3 * n_prim, -1, 3)
    assert np.abs(rebuild_rows(ident, hv) - fc_full).max() <= 1e-12 * max(scale, 1.0)


@pytest.mark.parametrize("name", ["rocksalt", "wurtzite", "monoclinic", "triclinic"])
def test_reduced_rows_with_a_random_nequip_model(name):
    """Issue 11's check on a random NequIP model: reduced and unreduced force constants and frequencies agree."""
    from phonjax.force_constants import force_constants
    from phonjax.models.nequip.model import Model
    from phonjax.models.nequip.nn.config import ModelConfig

    atoms, n = structures()[name]
    species = tuple(sorted(set(atoms.get_chemical_symbols())))
    cfg = ModelConfig(type_names=species, r_max=3.0, feature_irreps_hidden=("4x0e+2x1o+2x2e", "4x0e"),
                      radial_mlp_depth=(1, 1), radial_mlp_width=(8, 8), avg_num_neighbors=10.0,
                      irreps_edge_sh="1x0e+1x1o+1x2e", type_embed_num_features=4, dtype="float64")
    model = Model.init(cfg, seed=11)
    full = force_constants(model, atoms, n, symmetry=False, allow_small_supercell=True)
    red = force_constants(model, atoms, n, symmetry=True, allow_small_supercell=True)
    assert np.abs(red.fc - full.fc).max() <= 1e-8
    q = np.random.default_rng(0).uniform(-0.5, 0.5, (12, 3))
    assert np.abs(red.frequencies(q, lr="none") - full.frequencies(q, lr="none")).max() <= 1e-6
    if name == "rocksalt":
        assert red.report.n_hvp == 2
    assert red.report.n_hvp <= full.report.n_hvp == 3 * len(atoms)
