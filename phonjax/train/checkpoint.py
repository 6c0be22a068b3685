"""Training checkpoints with orbax: periodic (``out_dir/checkpoints``) and best (``out_dir/best``).

A checkpoint holds the array state ``{"params", "opt_state", "ema", "rng"}`` (orbax StandardSave, exact
float64 round trip) and a JSON ``meta`` dict (step, epoch, position in the epoch, stage, early-stopping
and plateau state, metric history). Restoring needs an *abstract* state of the same structure (the
freshly initialised one), which also restores optax's named tuples. Resume is bit-for-bit: data order is
a pure function of (seed, stage, epoch), so (step, epoch, batch index) determine what comes next.
Data-parallel state (replicated over a device mesh) is saved as one host copy; the caller puts a restored
state back onto its mesh (:meth:`phonjax.train.parallel.DataParallel.replicate`).

Integrity: after orbax has finished a step, a sha256 manifest of its files is written atomically
(:mod:`phonjax.train.integrity`); only then are older steps beyond ``keep`` deleted, so a process killed
at any moment leaves at least one complete, verifiable checkpoint. A restore verifies the manifest
first; a corrupt or incomplete step is named and the next older intact one is used (training is
deterministic, so resuming from an older checkpoint only repeats work, with bitwise the same result).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Callable

import jax
import numpy as np

from phonjax.train.integrity import has_manifest, verify_manifest, write_manifest


class CheckpointError(ValueError):
    """A checkpoint directory is missing, corrupt, or does not match the current run."""


def _ocp():
    import orbax.checkpoint as ocp
    logging.getLogger("absl").setLevel(logging.ERROR)
    return ocp


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Checkpointer:
    """Thin wrapper over ``orbax.checkpoint.CheckpointManager`` (synchronous saves, verified restores).

    Use as a context manager (or call :meth:`close`): orbax keeps background threads and event loops that
    must be shut down before the interpreter exits, also when a restore failed.
    """

    def __init__(self, directory: str | Path, keep: int = 2):
        ocp = _ocp()
        self.directory = Path(directory).absolute()
        self.keep = max(int(keep), 1)
        # max_to_keep=None: old steps are pruned here, only after the new step's manifest exists
        self._mngr = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=None, create=True, cleanup_tmp_directories=True,
                                                 enable_async_checkpointing=False))

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def steps(self) -> list[int]:
        return sorted(int(s) for s in self._mngr.all_steps())

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def step_dir(self, step: int) -> Path:
        return self.directory / str(int(step))

    def save(self, step: int, state: dict, meta: dict) -> None:
        ocp = _ocp()
        step = int(step)
        state = jax.tree_util.tree_map(np.asarray, state)
        if step in self._mngr.all_steps():  # a restarted stage or a resumed epoch rewrites its step
            self._mngr.delete(step)
        self._mngr.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
        self._mngr.wait_until_finished()
        if jax.process_index() == 0:  # multi-host: one writer of the shared step directory's manifest
            write_manifest(self.step_dir(step))
        # newer steps belong to a timeline abandoned by a resume from an older step; keep ``keep`` in all
        older = [s for s in self.steps() if s < step]
        for s in [s for s in self.steps() if s > step] + older[:max(0, len(older) + 1 - self.keep)]:
            self._mngr.delete(s)

    def _restore_step(self, step: int, target) -> tuple[dict, dict]:
        ocp = _ocp()
        try:
            out = self._mngr.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        except Exception as e:  # noqa: BLE001 - orbax raises many types on corrupt or mismatched data
            raise CheckpointError(f"cannot restore checkpoint {self.step_dir(step)}: "
                                  f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
        return out.state, out.meta

    def restore(self, abstract_state: dict, step: int | None = None,
                log: Callable[[str], None] | None = None) -> tuple[dict, dict]:
        """(state, meta) of ``step``, or by default of the newest intact step. ``abstract_state`` gives
        structure and dtypes. Corrupt or incomplete newer steps are skipped with one line each to ``log``
        (default: stderr); CheckpointError when nothing intact is left (or ``step`` itself is corrupt)."""
        log = log or _stderr
        target = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), abstract_state)
        candidates = self.steps()[::-1] if step is None else [int(step)]
        if not candidates:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        skipped: list[str] = []
        unverified: list[int] = []
        for s in candidates:
            if not has_manifest(self.step_dir(s)):
                unverified.append(s)
                skipped.append(f"checkpoint {self.step_dir(s)} has no checksums (its save did not finish)")
                continue
            why = verify_manifest(self.step_dir(s))
            if why is None:
                for p in skipped:
                    log(f"{p}: skipped, using checkpoint {self.step_dir(s)}")
                return self._restore_step(s, target)
            skipped.append(f"checkpoint {self.step_dir(s)} is corrupt: {why}")
        if len(unverified) == len(candidates):  # written without manifests (older phonjax): orbax's checks only
            s = unverified[0]
            log(f"checkpoint {self.step_dir(s)} has no checksums (older phonjax?): restoring it unverified")
            return self._restore_step(s, target)
        s = next(s for s in candidates if s not in unverified)
        why = verify_manifest(self.step_dir(s))
        raise CheckpointError(f"cannot restore checkpoint {self.step_dir(s)}: corrupt ({why}); no intact "
                              f"checkpoint left in {self.directory}: start afresh with --overwrite")

    def close(self) -> None:
        self._mngr.close()
