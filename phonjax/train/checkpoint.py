"""Training checkpoints with orbax: periodic (``out_dir/checkpoints``) and best (``out_dir/best``).

A checkpoint holds the array state ``{"params", "opt_state", "ema", "rng"}`` (orbax StandardSave, exact
float64 round trip) and a JSON ``meta`` dict (step, epoch, position in the epoch, stage, early-stopping
and plateau state, metric history). Restoring needs an *abstract* state of the same structure (the
freshly initialised one), which also restores optax's named tuples. Resume is bit-for-bit: data order is
a pure function of (seed, stage, epoch), so (step, epoch, batch index) determine what comes next.
"""
from __future__ import annotations

import logging
from pathlib import Path

import jax
import numpy as np


class CheckpointError(ValueError):
    """A checkpoint directory is missing, corrupt, or does not match the current run."""


def _ocp():
    import orbax.checkpoint as ocp
    logging.getLogger("absl").setLevel(logging.ERROR)
    return ocp


class Checkpointer:
    """Thin wrapper over ``orbax.checkpoint.CheckpointManager`` (synchronous saves)."""

    def __init__(self, directory: str | Path, keep: int = 2):
        ocp = _ocp()
        self.directory = Path(directory).absolute()
        self._mngr = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max(int(keep), 1), create=True,
                                                 enable_async_checkpointing=False))

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def save(self, step: int, state: dict, meta: dict) -> None:
        ocp = _ocp()
        state = jax.tree_util.tree_map(np.asarray, state)
        if int(step) in self._mngr.all_steps():  # a restarted stage rewrites its step-0 "best"
            self._mngr.delete(int(step))
        self._mngr.save(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
        self._mngr.wait_until_finished()

    def restore(self, abstract_state: dict, step: int | None = None) -> tuple[dict, dict]:
        """(state, meta) of ``step`` (default: latest). ``abstract_state`` gives structure and dtypes."""
        ocp = _ocp()
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        target = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), abstract_state)
        try:
            out = self._mngr.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        except Exception as e:  # noqa: BLE001 - orbax raises many types on corrupt data
            raise CheckpointError(f"cannot restore checkpoint {self.directory}/{step}: "
                                  f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
        return out.state, out.meta

    def close(self) -> None:
        self._mngr.close()
