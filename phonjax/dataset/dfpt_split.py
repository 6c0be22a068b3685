"""ph.x's q-grid as one Dask task per irreducible q-point (``DfptConfig.split_q``), the way QE's own GRID
recipe splits it:

1. ``qe/q0/``: ph.x with ``start_irr = 0, last_irr = 0`` writes ``<prefix>.dyn0`` (the grid and its
   irreducible q-points) and stops before any linear response (seconds);
2. ``qe/q<i>/`` for i = 1 … nq: ph.x with ``start_q = last_q = i`` on its own copy of the scf scratch
   (``tmp/<prefix>.save``, ``<prefix>.xml``) writes ``<prefix>.dyn<i>`` (q = 1 is Γ, with ε∞ and Z* when
   ``epsil``). The q-points run as samples of :func:`phonjax.dataset.runner.run_samples`: a local Dask
   cluster with ``workers`` threads (each ph.x is its own MPI process group), a scheduler address, or a
   dask-jobqueue cluster (:mod:`phonjax.dataset.cluster`);
3. the dyn files are gathered into ``qe/`` exactly where the one-process run writes them, so q2r, matdyn and
   the dielectric patch read the same files either way.

Resumable like the one-process run: a finished q-point has ``qe/q<i>/result.json`` and is skipped; a ph.x
killed mid-q restarts with ``recover`` in its own directory; a worker lost mid-q has its task rerun by Dask.
Every q-point sees the same input as in the one-process run, so the dynamical matrices are the same numbers.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .qe_io import ph_input_with
from .runner import QERunError, atomic_write_text, finished_run, load_result, run_qe, run_samples

__all__ = ["run_split_q", "split_done", "irreducible_q_count", "remove_scratch"]


def _copy_scratch(qe_dir: Path, prefix: str, dest: Path) -> None:
    """The scf scratch (``tmp/<prefix>.save``, ``tmp/<prefix>.xml``) copied to ``dest/tmp`` (via a temporary
    name, so a copy cut short is redone, never used)."""
    if (dest / "tmp").is_dir():
        return
    part = dest / "tmp.partial"
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    src = qe_dir / "tmp"
    shutil.copytree(src / f"{prefix}.save", part / f"{prefix}.save")
    if (src / f"{prefix}.xml").is_file():
        shutil.copy2(src / f"{prefix}.xml", part / f"{prefix}.xml")
    os.replace(part, dest / "tmp")


def irreducible_q_count(dyn0_text: str) -> int:
    """Number of irreducible q-points listed in a ``<prefix>.dyn0`` file (its second line)."""
    lines = dyn0_text.splitlines()
    try:
        n = int(lines[1].split()[0])
    except (IndexError, ValueError):
        raise QERunError("ph.x wrote an unreadable q-point list (dyn0)") from None
    if n < 1:
        raise QERunError(f"ph.x listed {n} irreducible q-points")
    return n


def _init_text(ph_text: str) -> str:
    return ph_input_with(ph_text, start_irr=0, last_irr=0)


def split_done(ph_text: str, qe_dir: Path, prefix: str) -> bool:
    """Whether every q-point of a split run of ``ph_text`` has finished (its q list and all results)."""
    qe_dir = Path(qe_dir)
    dyn0 = qe_dir / "q0" / f"{prefix}.dyn0"
    if finished_run(qe_dir / "q0", "ph", _init_text(ph_text)) is None or not dyn0.is_file():
        return False
    try:
        nq = irreducible_q_count(dyn0.read_text())
    except QERunError:
        return False
    return all(load_result(qe_dir / f"q{i}") is not None for i in range(1, nq + 1))


def run_split_q(ph_text: str, *, prefix: str, qe_dir: Path, run_kw: dict, workers: int = 1,
                scheduler=None, progress: bool = True) -> tuple[int, float]:
    """Run the ph.x input ``ph_text`` (an ``ldisp`` q-grid run, ``fildyn = '<prefix>.dyn'``) one irreducible
    q-point per Dask task (module docstring); returns (number of irreducible q-points, ph.x seconds summed over
    them). A q-point that failed raises :class:`QERunError` naming it (after the others
    finished: rerunning resumes)."""
    qe_dir = Path(qe_dir)
    init = qe_dir / "q0"
    _copy_scratch(qe_dir, prefix, init)
    run_qe("ph.x", _init_text(ph_text), init, "ph", resume=True, **run_kw)
    dyn0 = init / f"{prefix}.dyn0"
    if not dyn0.is_file():
        raise QERunError(f"ph.x wrote no q-point list ({dyn0})")
    nq = irreducible_q_count(dyn0.read_text())

    def q_dir(i: int) -> Path:
        return qe_dir / f"q{i}"

    def compute(i: int) -> dict:
        d = q_dir(i)
        _copy_scratch(qe_dir, prefix, d)
        text = ph_input_with(ph_text, start_q=i, last_q=i)
        dyn = d / f"{prefix}.dyn{i}"  # a finished run whose dyn file was lost is redone, a killed one recovers
        resume = dyn.is_file() or (d / "ph.out.partial").exists()
        rec = run_qe("ph.x", text, d, "ph", resume=resume, recover_text=ph_input_with(text, recover=".true."),
                     **run_kw)
        if not dyn.is_file():
            raise QERunError(f"ph.x finished q-point {i} without writing {prefix}.dyn{i}")
        return {"q": i, "seconds": rec.seconds}

    rep = run_samples(range(1, nq + 1), q_dir, compute, workers=workers, scheduler=scheduler, desc="q-points",
                      progress=progress)
    if rep.failed:
        first = min(rep.failed)
        raise QERunError(f"ph.x failed at {len(rep.failed)} of {nq} q-points (q {first}: {rep.failed[first]}); "
                         "rerun the same command to resume")
    atomic_write_text(qe_dir / f"{prefix}.dyn0", dyn0.read_text())
    seconds = 0.0
    for i in range(1, nq + 1):
        atomic_write_text(qe_dir / f"{prefix}.dyn{i}", (q_dir(i) / f"{prefix}.dyn{i}").read_text())
        seconds += float(json.loads((q_dir(i) / "result.json").read_text()).get("seconds", 0.0))
    return nq, seconds


def remove_scratch(qe_dir: Path) -> None:
    """The per-q scratch copies (``qe/q*/tmp``), removed when the run is done (unless keep_scratch)."""
    for d in Path(qe_dir).glob("q*/tmp*"):
        shutil.rmtree(d, ignore_errors=True)
