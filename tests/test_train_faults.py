"""Fault test of training: a tiny finetune (PairModel, tests/train_fault_child.py) is SIGKILLed at random
points (during compilation, optimiser steps, evaluation, checkpoint saves or their pruning) and resumed;
the final training state must be bitwise equal to that of an uninterrupted run in this process.

Each kill point is drawn from a seeded RNG: wait for the child to finish 1–2 epochs (its "epoch N:" log
lines), then a uniform random delay of up to half a second (checkpoint saves and their pruning
follow the epoch line immediately; the next epoch's steps follow them).
"""
from __future__ import annotations

import os
import queue
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from train_fault_child import config  # noqa: E402
from train_helpers import PairModel, label_with, rattled_lif, write_extxyz  # noqa: E402

from phonjax.train.loop import finetune  # noqa: E402

CHILD = Path(__file__).parent / "train_fault_child.py"
ROOT = Path(__file__).resolve().parents[1]
MAX_EPOCHS = 8
TIMEOUT_S = 600  # per child, on a heavily loaded machine


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    teacher = PairModel(seed=1, scale=1.3)
    tp = {"model": teacher.initial_params(), "offsets": jnp.zeros(2)}
    imgs = label_with(teacher, tp, rattled_lif(6, seed=0, reps=(1, 1, 1)))
    return write_extxyz(d / "data.extxyz", imgs, info={"E0_Li": -1.5, "E0_F": -2.5})


def _start(data: Path, out: Path, cache: Path) -> tuple[subprocess.Popen, queue.Queue]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p), JAX_COMPILATION_CACHE_DIR=str(cache),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    proc = subprocess.Popen([sys.executable, str(CHILD), str(data), str(out), str(MAX_EPOCHS)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def _run_and_maybe_kill(data, out, cache, rng: random.Random, transcript: list[str]) -> bool:
    """One child run; SIGKILL at a random point. True when the child finished before the kill."""
    proc, lines = _start(data, out, cache)
    wait_epochs, delay = rng.randint(1, 2), rng.uniform(0.0, 0.5)
    seen, line, deadline = 0, "", time.time() + TIMEOUT_S
    while seen < wait_epochs and line is not None:  # "main epoch N: …" ends an epoch of this child
        try:
            line = lines.get(timeout=max(deadline - time.time(), 0.1))
        except queue.Empty:
            proc.kill()
            pytest.fail("child timed out:\n" + "\n".join(transcript[-20:]))
        if line is not None:
            transcript.append(line)
            seen += re.search(r" epoch \d+: ", line) is not None
    if line is not None:
        time.sleep(delay)
        proc.kill()
    rc = proc.wait(timeout=TIMEOUT_S)
    while line is not None:
        line = lines.get(timeout=TIMEOUT_S)
        if line is not None:
            transcript.append(line)
    if rc == -9:
        transcript.append(f"-- killed after {wait_epochs} epoch line(s) + {delay:.3f} s")
        return False
    assert rc == 0, "\n".join(transcript[-30:])
    return True


def test_random_kills_then_resume_bitwise(tmp_path, data):
    """Three random SIGKILLs (seeds 0, 1, 2), each followed by a resume; then run to the end."""
    ref = finetune(config(str(data), str(tmp_path / "ref"), MAX_EPOCHS), model=PairModel(seed=0),
                   log=lambda m: None)
    out, cache, transcript = tmp_path / "killed", tmp_path / "jax-cache", []
    kills, finished = 0, False
    for seed in (0, 1, 2):
        finished = _run_and_maybe_kill(data, out, cache, random.Random(seed), transcript)
        if finished:
            break
        kills += 1
    if not finished:
        assert _run_and_maybe_kill(data, out, cache, _Never(), transcript)
    assert kills >= 1, "no kill landed before the end of training:\n" + "\n".join(transcript)
    final = np.load(out / "final.npz")
    want = jax.tree_util.tree_leaves(ref.last_state)
    assert len(final.files) == len(want)
    for k, w in enumerate(want):
        np.testing.assert_array_equal(final[f"arr_{k}"], np.asarray(w), err_msg="\n".join(transcript))
    assert (out / "model" / "params.npz").is_file()
    print("\n".join(transcript))  # where the kills landed (shown with pytest -s)


class _Never(random.Random):
    """An RNG whose kill point is never reached (waits for more epoch lines than a run prints)."""

    def randint(self, a, b):
        return 10 * MAX_EPOCHS
