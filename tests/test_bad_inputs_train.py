"""Issue 19's training and dataset rows, run as a user would: the CLI in a subprocess, exit code + message.

- a diverging learning rate stops with one line (what, where, what to do) and a rerun with a sane rate
  is not refused (only the starting model's step-0 checkpoint was left);
- bytes flipped in a same-size checkpoint data file are detected by the sha256 manifest and named; with an
  older intact checkpoint (API level, tiny PairModel) that one is used, with bitwise the undisturbed result;
- truncated checkpoint data: one line, exit 2, no asyncio/event-loop tracebacks;
- a used out_dir is refused with the flags that resolve it;
- `phonjax dataset` with 3 of 6 samples failing (a fake pw.x on PATH crashes for odd samples, the real
  one runs the others): exit 1, a readable summary naming each failed sample, its directory and why;
  a rerun with a working pw.x computes only the failed ones.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import PairModel, label_with, rattled_lif, write_extxyz  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _cli(args, cache: Path | None = None, path_prefix: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    if cache is not None:  # compiled steps shared between the finetune runs of this module
        env.update(JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run([sys.executable, "-m", "phonjax.cli", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def _error_line(proc: subprocess.CompletedProcess) -> str:
    """The single 'phonjax: error:' line of stderr; fails on tracebacks or several error lines."""
    assert "Traceback" not in proc.stderr and "Event loop" not in proc.stderr, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("phonjax: error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


# ------------------------------------------------------------------------------------------------ finetune
@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny phonjax NequIP model directory, teacher-labelled LiF data, a config writer, a JAX cache."""
    from phonjax.models.nequip.model import Model
    from phonjax.models.nequip.train_adapter import nequip_arch_config
    d = tmp_path_factory.mktemp("bad_train")
    teacher = PairModel(seed=1, scale=1.3)
    tp = {"model": teacher.initial_params(), "offsets": jnp.zeros(2)}
    data = write_extxyz(d / "data.extxyz", label_with(teacher, tp, rattled_lif(6, seed=0, reps=(1, 1, 1))),
                        info={"E0_Li": -1.5, "E0_F": -2.5})
    arch = nequip_arch_config(("Li", "F"), r_max=3.0, num_layers=1, num_features=2, l_max=1,
                              radial_mlp_width=4, num_bessels=4)
    Model.init(arch, seed=0).save(d / "model")

    def config(out: Path, lr: float = 5e-3) -> Path:
        p = out.parent / f"{out.name}.yaml"
        p.write_text(yaml.safe_dump({
            "model": str(d / "model"), "out_dir": str(out),
            "data": {"train": str(data), "batch_size": 3},
            "optim": {"learning_rate": lr, "warmup_steps": 1},
            "training": {"max_epochs": 3, "progress": False, "patience": None, "keep_checkpoints": 2,
                         "energy_reference": "none"}}))
        return p

    return {"dir": d, "config": config, "cache": d / "jax-cache"}


@pytest.fixture(scope="module")
def diverged_then_rerun(inputs):
    """A run with a learning rate of 1e200 (the loss becomes NaN in epoch 1), then the same out_dir
    with a sane rate (3 epochs of 2 steps; checkpoints at steps 4 and 6)."""
    out = inputs["dir"] / "run"
    bad = _cli(["finetune", inputs["config"](out, lr=1e200)], inputs["cache"])
    good = _cli(["finetune", inputs["config"](out)], inputs["cache"])
    return bad, good, out


def _copy_run(inputs, src: Path, name: str) -> tuple[Path, Path]:
    out = inputs["dir"] / name
    shutil.copytree(src, out)
    return out, inputs["config"](out)


def test_diverging_rate_is_one_line_and_a_rerun_is_not_refused(diverged_then_rerun):
    bad, good, out = diverged_then_rerun
    assert bad.returncode == 2
    line = _error_line(bad)
    assert "training diverged in stage main: the training loss became nan at step" in line
    assert "lower the learning rate (now 1e+200" in line and "a plain rerun starts afresh" in line
    assert good.returncode == 0, good.stderr[-3000:]
    assert "removed the previous run's stages" in good.stdout and "step-0 checkpoint" in good.stdout
    assert "finetuned model:" in good.stdout and (out / "model" / "config.yaml").is_file()
    assert sorted(p.name for p in (out / "stages" / "main" / "checkpoints").iterdir()) == ["4", "6"]


def test_used_out_dir_is_refused_with_the_flags_that_resolve_it(inputs, diverged_then_rerun):
    _, _, run = diverged_then_rerun
    proc = _cli(["finetune", inputs["config"](run)])
    assert proc.returncode == 2
    line = _error_line(proc)
    assert "already holds checkpoints" in line and "--resume" in line and "--overwrite" in line


def test_resume_with_other_settings_is_one_line_and_changes_nothing(inputs, diverged_then_rerun):
    """--resume continues a run bit for bit, so a changed setting (here the epoch count and the rate) would be
    silently ignored: it is refused in one line naming each, and the run directory is left as it was (its
    config.yaml still the run's). A moved run directory (out_dir) is not a changed setting."""
    _, _, run = diverged_then_rerun
    out, cfg = _copy_run(inputs, run, "changed")
    before = (out / "config.yaml").read_text()
    proc = _cli(["finetune", cfg, "--resume", "--set", "training.max_epochs=9", "--set", "optim.learning_rate=0.1"])
    assert proc.returncode == 2
    line = _error_line(proc)
    assert "--resume continues the run" in line and "training.max_epochs 3 → 9" in line
    assert "optim.learning_rate 0.005 → 0.1" in line and "out_dir '" not in line
    assert (out / "config.yaml").read_text() == before


def _largest_data_file(step_dir: Path) -> Path:
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    return max(files, key=lambda p: p.stat().st_size)


def _flip_bytes(f: Path) -> None:
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    f.write_bytes(bytes(raw))  # same size, different bytes


def test_flipped_bytes_are_detected_and_named(inputs, diverged_then_rerun):
    _, _, run = diverged_then_rerun
    out, cfg = _copy_run(inputs, run, "flipped")
    for step in ("4", "6"):
        _flip_bytes(_largest_data_file(out / "stages" / "main" / "checkpoints" / step))
    proc = _cli(["finetune", cfg, "--resume"])
    assert proc.returncode == 2
    line = _error_line(proc)
    assert f"cannot restore checkpoint {out / 'stages' / 'main' / 'checkpoints' / '6'}: corrupt" in line
    assert "does not match its sha256 checksum" in line and "no intact checkpoint left" in line


def test_corrupt_newest_checkpoint_is_named_and_the_older_one_used(tmp_path):
    """API level (tiny PairModel): the newest checkpoint's bytes flipped → named, the older intact one
    used; training is deterministic, so the result is bitwise that of the undisturbed run."""
    from train_fault_child import config
    from phonjax.train.loop import finetune
    teacher = PairModel(seed=1, scale=1.3)
    tp = {"model": teacher.initial_params(), "offsets": jnp.zeros(2)}
    data = write_extxyz(tmp_path / "d.extxyz", label_with(teacher, tp, rattled_lif(6, seed=0, reps=(1, 1, 1))),
                        info={"E0_Li": -1.5, "E0_F": -2.5})
    full = finetune(config(str(data), str(tmp_path / "a"), 3), model=PairModel(seed=0), log=lambda m: None)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    ck = tmp_path / "b" / "stages" / "main" / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["6", "9"]
    _flip_bytes(_largest_data_file(ck / "9"))
    msgs: list[str] = []
    res = finetune(config(str(data), str(tmp_path / "b"), 3), model=PairModel(seed=0), resume=True,
                   log=msgs.append)
    assert any(m.startswith(f"checkpoint {ck / '9'} is corrupt: state/") and "sha256" in m
               and m.endswith(f"skipped, using checkpoint {ck / '6'}") for m in msgs), msgs
    assert "stage main: resumed at step 6 (epoch 2)" in msgs
    for a, b in zip(jax.tree_util.tree_leaves(full.last_state), jax.tree_util.tree_leaves(res.last_state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert verify_all(ck) == {}  # the corrupt step was rewritten by the resumed run


def verify_all(ck: Path) -> dict:
    from phonjax.train.integrity import verify_manifest
    return {p.name: why for p in ck.iterdir() if (why := verify_manifest(p)) is not None}


def test_truncated_checkpoints_are_one_line_without_tracebacks(inputs, diverged_then_rerun):
    _, _, run = diverged_then_rerun
    out, cfg = _copy_run(inputs, run, "truncated")
    for step in ("4", "6"):
        f = _largest_data_file(out / "stages" / "main" / "checkpoints" / step)
        f.write_bytes(f.read_bytes()[:40])
    proc = _cli(["finetune", cfg, "--resume"])
    assert proc.returncode == 2
    line = _error_line(proc)
    assert f"cannot restore checkpoint {out / 'stages' / 'main' / 'checkpoints' / '6'}: corrupt" in line
    assert "truncated" in line and "no intact checkpoint left" in line and "--overwrite" in line


# ------------------------------------------------------------------------------------------------- dataset
FAKE_PW = """#!/bin/sh
# fake pw.x: crashes for samples 1, 3 and 5; the real pw.x runs the others
case "$(grep -o "s0000[0-9]" "$2" | head -n 1)" in
  s00001|s00003|s00005) echo "fake pw.x: simulated crash" >&2; exit 3;;
esac
exec {real} "$@"
"""


def test_dataset_with_failed_samples_exits_nonzero_with_a_summary(tmp_path):
    from dataset_helpers import lif_primitive, require_qe
    require_qe("pw.x")
    from ase.io import write
    real = shutil.which("pw.x")
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "pw.x").write_text(FAKE_PW.format(real=real))
    (fake / "pw.x").chmod(0o755)
    write(str(tmp_path / "LiF.cif"), lif_primitive(4.0).to_ase())
    cfg = tmp_path / "dataset.yaml"
    cfg.write_text(yaml.safe_dump({
        "structure": str(tmp_path / "LiF.cif"), "out_dir": str(tmp_path / "out"), "supercell": [1, 1, 1],
        "n_samples": 6, "seed": 3, "relax": False, "isolated_atoms": False,
        "pw": {"ecutwfc": 30, "ecutrho": 120, "kpts": [1, 1, 1], "gamma_only": True, "conv_thr": 1e-7}}))
    proc = _cli(["dataset", cfg], path_prefix=fake)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "array(" not in proc.stdout, proc.stdout
    assert "dataset: 3 of 6 samples done (3 computed now, 0 reused), 3 failed" in proc.stdout
    samples = tmp_path / "out" / "samples"
    for i in (1, 3, 5):
        line = next(ln for ln in proc.stdout.splitlines() if ln.strip().startswith(f"#{i} "))
        assert str(samples / f"{i:05d}") in line and "exited with status 3" in line
        assert "fake pw.x: simulated crash" in line
        assert (samples / f"{i:05d}" / "scf.in").is_file() and not (samples / f"{i:05d}" / "result.json").exists()
    assert "rerun the same command to retry only these" in proc.stdout
    print(proc.stdout)
    # resumable: the finished samples are kept, only the failed ones run again
    again = _cli(["dataset", cfg])
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "dataset: 6 of 6 samples done (3 computed now, 3 reused)" in again.stdout
    assert "failed samples" not in again.stdout and "[dataset]" not in again.stdout
