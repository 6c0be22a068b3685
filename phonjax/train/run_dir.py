"""A finetuning run's output directory: metric files, whether it holds a run worth resuming, overwriting.

A directory "holds checkpoints" when some stage has a checkpoint beyond step 0. The step-0 checkpoint
(the starting model, saved as the first "best" candidate) is recreated identically by any fresh start,
so a run that failed before its first epoch ended (a diverging learning rate, bad data found late) does
not block a rerun with corrected settings.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Callable

# what finetune writes into out_dir and removes on overwrite (config.yaml is rewritten; nothing else is touched)
RUN_OUTPUTS = ("stages", "model", "metrics.json", "metrics.csv", "learning_curve.png")


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_metrics(history: list[dict], out_dir: Path) -> None:
    """metrics.json (list of rows) and metrics.csv (union of keys as columns)."""
    atomic_write(out_dir / "metrics.json", json.dumps(history, indent=1))
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    tmp = out_dir / "metrics.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
    os.replace(tmp, out_dir / "metrics.csv")


def checkpoint_steps(out_dir: Path) -> list[int]:
    """Steps of every checkpoint (periodic and best) of every stage under ``out_dir/stages``."""
    root = Path(out_dir) / "stages"
    if not root.is_dir():
        return []
    return [int(d.name) for kind in ("checkpoints", "best") for d in root.glob(f"*/{kind}/*")
            if d.is_dir() and d.name.isdigit()]


def holds_checkpoints(out_dir: Path) -> bool:
    """True when ``out_dir`` holds training progress (a checkpoint beyond the starting model's step 0)."""
    return any(s > 0 for s in checkpoint_steps(out_dir))


def check_fresh_start(out_dir: Path, *, overwrite: bool) -> None:
    """CheckpointError when ``out_dir`` holds training progress and ``overwrite`` is not set."""
    from phonjax.train.checkpoint import CheckpointError
    if holds_checkpoints(out_dir) and not overwrite:
        raise CheckpointError(f"{out_dir} already holds checkpoints: resume (--resume), start afresh "
                              "(--overwrite), or choose another out_dir")


def clear_previous_run(out_dir: Path, *, overwrite: bool, log: Callable[[str], None]) -> None:
    """Remove a previous run's outputs (:data:`RUN_OUTPUTS` only) before a fresh start: all of them with
    ``overwrite``, otherwise only when nothing but step-0 checkpoints of a failed start is left."""
    out_dir = Path(out_dir)
    check_fresh_start(out_dir, overwrite=overwrite)
    present = [n for n in RUN_OUTPUTS if (out_dir / n).exists()]
    if not present or not (overwrite or checkpoint_steps(out_dir)):
        return
    for name in present:
        p = out_dir / name
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    why = "--overwrite" if overwrite else "only the starting model's step-0 checkpoint was left"
    log(f"removed the previous run's {', '.join(present)} from {out_dir} ({why})")


#: settings a resumed run may change: they do not touch the numbers (a run directory may be moved)
RESUME_MAY_CHANGE = ("training.progress", "out_dir")


def _flat(d, prefix="") -> dict:
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        out.update(_flat(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def check_resume_config(out_dir: Path, config: dict) -> None:
    """ConfigError when a resumed run is asked for other settings than the run in ``out_dir`` was made with
    (its config.yaml): resuming continues that run bit for bit, so a changed setting would be silently
    ignored (or half applied). ``config``: the new run's settings as :func:`phonjax.config.to_dict` writes them.
    Keys present on one side only (another phonjax version) are not compared."""
    import yaml

    from phonjax.config import ConfigError
    p = Path(out_dir) / "config.yaml"
    if not p.is_file():
        return
    old = _flat(yaml.safe_load(p.read_text()))
    new = _flat(yaml.safe_load(yaml.safe_dump(config, sort_keys=False)))
    diff = [f"{k} {old[k]!r} → {new[k]!r}" for k in new
            if k in old and k not in RESUME_MAY_CHANGE and old[k] != new[k]]
    if diff:
        raise ConfigError(f"--resume continues the run in {out_dir} as it was set up ({p}), but these settings "
                          f"differ: {'; '.join(diff)}; drop them, or start a new run (another out_dir or "
                          "--overwrite)")
