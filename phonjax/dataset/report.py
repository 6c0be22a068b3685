"""Readable summaries of resumable sample loops (the ``dataset`` command's final report).

A failed sample is one line: its index, its directory (where pw.x's input, output and stderr are kept)
and the first line of the error, shortened. Finished samples stay on disk, so rerunning the same command
retries only the failed ones.
"""
from __future__ import annotations

from pathlib import Path

MAX_MESSAGE = 200  # characters of one failure message in a summary line


def sample_dir_name(index: int) -> str:
    """Directory name of sample ``index`` under ``<out_dir>/samples``."""
    return f"{int(index):05d}"


def short_message(message: str, limit: int = MAX_MESSAGE) -> str:
    """First line of ``message``, whitespace collapsed, at most ``limit`` characters."""
    text = str(message).strip()
    first = " ".join(text.splitlines()[0].split()) if text else "unknown error"
    return first if len(first) <= limit else first[:limit - 1] + "…"


def failure_lines(failed: dict, sample_dir) -> list[str]:
    """One line per failed sample (sorted by index): ``#i  <dir>: <message>``."""
    return [f"#{i}  {sample_dir(i)}: {short_message(m)}" for i, m in sorted(failed.items())]


def dataset_summary(result) -> str:
    """Multi-line summary of a :class:`phonjax.dataset.DatasetResult` (counts, files, failures)."""
    n_done = result.n_samples
    n_failed = len(result.failed)
    total = result.n_requested if result.n_requested is not None else n_done + n_failed
    head = (f"dataset: {n_done} of {total} samples done ({len(result.computed)} computed now, "
            f"{len(result.reused)} reused)" + (f", {n_failed} failed" if n_failed else ""))
    if total > n_done + n_failed:
        head += f", {total - n_done - n_failed} not run yet (rerun to continue)"
    lines = [head, f"  written: {result.extxyz} ({n_done} frames)"]
    if result.isolated_energies:
        lines.append("  isolated-atom energies: " + ", ".join(
            f"{el} {e:.6f} eV" for el, e in result.isolated_energies.items()))
    if result.seconds_per_sample == result.seconds_per_sample:  # not NaN
        lines.append(f"  mean pw.x wall time per sample: {result.seconds_per_sample:.1f} s")
    if n_failed:
        root = Path(result.samples_dir) if result.samples_dir is not None else None
        lines.append(f"  failed samples (not in {Path(result.extxyz).name}; inputs, outputs and stderr kept in "
                     "their directories; rerun the same command to retry only these):")
        lines += ["    " + ln for ln in failure_lines(
            result.failed, (lambda i: root / sample_dir_name(i)) if root is not None else (lambda i: f"sample {i}"))]
    return "\n".join(lines)
