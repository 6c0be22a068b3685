"""Force-constant-aware loss: HVPs vs finite differences, phonopy reference round trip, FC-aware finetuning.

Uses the analytic toy potential of tests/train_helpers.py (teacher/student). Runtime ≈ 25 s on 2 cores.
"""
from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import PairModel, label_with, rattled_lif, write_extxyz  # noqa: E402

from phonjax.train.config import (DataConfig, FcLossConfig, FinetuneConfig, LossConfig,  # noqa: E402
                                  OptimConfig, TrainingConfig)
from phonjax.train.data import Frame, compute_capacities  # noqa: E402
from phonjax.train.fc_loss import (FcReferenceError, fc_loss, hvp_on_rows, load_fc_reference,  # noqa: E402
                                   random_directions, reference_hvp, unit_directions)
from phonjax.train.loop import finetune  # noqa: E402
from phonjax.train.model_api import make_batch, total_energies  # noqa: E402


def _energy_fn(model, tparams, numbers, positions, cell):
    f = Frame(np.asarray(numbers), np.asarray(positions), np.asarray(cell), 0.0, np.zeros((len(numbers), 3)), None)
    caps = compute_capacities([model.frame_sizes(f)], 1)
    b = make_batch(model, [f], caps)
    n = len(numbers)

    def e(pos):
        full = b.positions.at[:n].set(pos)
        return total_energies(model, tparams, b, full, b.cells)[0]
    return e, (model, tparams, b, caps)


def _phonopy_lif(tmp_path, model, tparams):
    """phonopy_params.yaml for fcc LiF 2×2×2 with the model's exact force constants (jax.hessian)."""
    import phonopy
    from phonopy.structure.atoms import PhonopyAtoms
    a = 4.03
    cell = np.array([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])
    unit = PhonopyAtoms(symbols=["Li", "F"], cell=cell, scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]])
    ph = phonopy.Phonopy(unit, supercell_matrix=2 * np.eye(3, dtype=int), log_level=0)
    sc = ph.supercell
    e, _ = _energy_fn(model, tparams, sc.numbers, sc.positions, sc.cell)
    n = len(sc.numbers)
    hess = np.asarray(jax.hessian(e)(jnp.asarray(sc.positions))).reshape(n, 3, n, 3).transpose(0, 2, 1, 3)
    ph.force_constants = hess
    path = tmp_path / "phonopy_params.yaml"
    ph.save(str(path), settings={"force_constants": True})
    return path, hess


def test_hvp_matches_finite_differences():
    m = PairModel(seed=0)
    tp = {"model": m.initial_params(), "offsets": jnp.zeros(2)}
    at = rattled_lif(1, seed=3)[0]
    e, _ = _energy_fn(m, tp, at.numbers, at.positions, at.cell.array)
    pos = jnp.asarray(at.positions)
    rows = np.array([0, 5])
    dirs = random_directions(jax.random.PRNGKey(0), 3, 2)
    hv = np.asarray(hvp_on_rows(e, pos, rows, dirs))
    g = jax.jit(jax.grad(e))
    h = 1e-4
    for k in range(3):
        v = np.zeros_like(at.positions)
        v[rows] = np.asarray(dirs[k])
        fd = (np.asarray(g(pos + h * v)) - np.asarray(g(pos - h * v))) / (2 * h)
        np.testing.assert_allclose(hv[k], fd, atol=1e-6)


def test_phonopy_reference_roundtrip(tmp_path):
    """Model's own Hessian written by phonopy and read back → loss 0; another model → loss > 0."""
    teacher = PairModel(seed=1, scale=1.3)
    tt = {"model": teacher.initial_params(), "offsets": jnp.zeros(2)}
    path, hess = _phonopy_lif(tmp_path, teacher, tt)
    ref = load_fc_reference(path)
    assert ref.fc.shape == (2, 16, 3, 3) and list(ref.numbers[ref.rows]) == [3, 9]
    np.testing.assert_allclose(ref.fc, hess[ref.rows], atol=1e-12)
    e, _ = _energy_fn(teacher, tt, ref.numbers, ref.positions, ref.cell)
    dirs = jnp.asarray(unit_directions(2))
    assert float(fc_loss(e, jnp.asarray(ref.positions), ref.rows, ref.fc, dirs)) < 1e-20
    student = PairModel(seed=0)
    es, _ = _energy_fn(student, {"model": student.initial_params(), "offsets": jnp.zeros(2)},
                       ref.numbers, ref.positions, ref.cell)
    assert float(fc_loss(es, jnp.asarray(ref.positions), ref.rows, ref.fc, dirs)) > 1e-3
    # a random direction's reference HVP is the same linear combination of the rows
    v = random_directions(jax.random.PRNGKey(1), 1, 2)
    np.testing.assert_allclose(reference_hvp(ref.fc, v)[0], np.einsum("ia,ijab->jb", v[0], ref.fc))
    with pytest.raises(FcReferenceError, match="not found"):
        load_fc_reference(tmp_path / "nope.yaml")


def test_phonopy_force_sets_reference(phonopy_examples):
    d = phonopy_examples / "NaCl"
    ref = load_fc_reference(d / "phonopy_disp.yaml", force_sets=d / "FORCE_SETS")
    assert ref.fc.shape == (2, 64, 3, 3) and sorted(ref.numbers[ref.rows].tolist()) == [11, 17]
    assert np.abs(ref.fc.sum(axis=1)).max() < 1e-4  # acoustic sum rule of the DFT rows


def test_fc_aware_finetuning(tmp_path):
    """The FC term alone pulls the student's force constants to the teacher's (error ÷ > 20); combined
    with E/F it trains with one compilation and keeps the FC error below the start."""
    teacher = PairModel(seed=1, scale=1.3)
    tt = {"model": teacher.initial_params(), "offsets": jnp.zeros(2)}
    path, _ = _phonopy_lif(tmp_path, teacher, tt)
    data = write_extxyz(tmp_path / "d.extxyz", label_with(teacher, tt, rattled_lif(5, seed=0, reps=(1, 1, 1))))
    ref = load_fc_reference(path)

    def fc_error(tparams):
        e, _ = _energy_fn(PairModel(seed=0), tparams, ref.numbers, ref.positions, ref.cell)
        return float(fc_loss(e, jnp.asarray(ref.positions), ref.rows, ref.fc, jnp.asarray(unit_directions(2))))

    start = fc_error({"model": PairModel(seed=0).initial_params(), "offsets": jnp.zeros(2)})
    for ew, fw, n_vec, factor in ((0.0, 0.0, 0, 20.0), (0.1, 1.0, 2, 5.0)):
        cfg = FinetuneConfig(
            model="toy", out_dir=str(tmp_path / f"o{fw}"),
            data=DataConfig(train=str(data), valid=str(data), batch_size=5, use_stress=False),
            loss=LossConfig(forces_weight=fw, energy_weight=ew,
                            fc=FcLossConfig(reference=str(path), weight=1.0, n_vectors=n_vec)),
            optim=OptimConfig(learning_rate=0.02, ema_decay=None, schedule="constant"),
            training=TrainingConfig(max_epochs=30, progress=False, energy_reference="fit", eval_every=30,
                                    checkpoint_every=100, patience=None))
        r = finetune(cfg, model=PairModel(seed=0), log=lambda s: None)
        assert r.compilations["main"]["train_step"] == 1
        assert fc_error(r.params) < start / factor, (fw, fc_error(r.params), start)


def test_dft_finite_displacement_reference():
    """examples/LiF: POSCAR + FORCE_SETS (QE finite displacements, 3×3×3) as an FC-loss reference."""
    root = Path(__file__).resolve().parents[1] / "examples" / "LiF"
    if not (root / "fd" / "FORCE_SETS").is_file():
        pytest.skip("examples/LiF/fd/FORCE_SETS not present")
    ref = load_fc_reference(root / "POSCAR", force_sets=root / "fd" / "FORCE_SETS", supercell_matrix=[3, 3, 3])
    assert ref.fc.shape == (2, 54, 3, 3) and list(ref.numbers[ref.rows]) == [3, 9]
    assert np.abs(ref.fc.sum(axis=1)).max() < 1e-3          # acoustic sum rule of DFT rows
    assert 2.0 < ref.fc[0, 0, 0, 0] < 6.0                    # Li on-site, eV/Å² (rock salt: isotropic)
    np.testing.assert_allclose(np.diag(ref.fc[0, 0]), ref.fc[0, 0, 0, 0], rtol=1e-6)
    with pytest.raises(FcReferenceError, match="supercell_matrix"):
        load_fc_reference(root / "POSCAR", force_sets=root / "fd" / "FORCE_SETS")
