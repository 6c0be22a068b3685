"""Running QE executables: MPI launch, recorded inputs/outputs, atomic writes, resumable sample loops.

Layout of one calculation directory::

    <dir>/<name>.in      the input, written before the run
    <dir>/<name>.out     the output, moved into place (atomic rename) only after the run ended
    <dir>/<name>.err     stderr
    <dir>/result.json    (sample directories) the parsed result, written atomically: its presence is the
                         "finished" marker used to resume

A killed run leaves at most ``<name>.out.partial``; the next run starts the sample again.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable
from uuid import uuid4


class QENotFoundError(ValueError):
    """A Quantum ESPRESSO executable (or mpirun) is not installed."""


class QERunError(RuntimeError):
    """A QE executable exited with a non-zero status."""


INSTALL_HINT = "install Quantum ESPRESSO with `bash scripts/install_qe.sh` (Debian package quantum-espresso)"


def find_executable(name: str) -> str:
    """Absolute path of ``name`` (e.g. 'pw.x') on PATH, or QENotFoundError naming scripts/install_qe.sh."""
    path = shutil.which(name)
    if path is None:
        raise QENotFoundError(f"{name} not found on PATH: {INSTALL_HINT}")
    return path


def qe_available(names: Iterable[str] = ("pw.x",)) -> bool:
    return all(shutil.which(n) for n in names)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; use the ordinary permissions
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True))


def _env(threads: int = 1) -> dict:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(threads))
    env.setdefault("OPENBLAS_NUM_THREADS", str(threads))
    # Open MPI refuses root without these (containers, CI)
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    env.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")
    return env


@dataclass(frozen=True)
class RunRecord:
    """One finished executable run: files and wall time (s)."""

    input_path: Path
    output_path: Path
    seconds: float
    returncode: int = 0


def _input_sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def finished_run(workdir: str | Path, name: str, input_text: str) -> RunRecord | None:
    """The record of an earlier successful run of exactly ``input_text`` as ``name`` in ``workdir`` (its
    ``<name>.done.json`` marker names the input's sha256 and the wall time), or None."""
    workdir = Path(workdir)
    marker, out = workdir / f"{name}.done.json", workdir / f"{name}.out"
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if info.get("input_sha256") != _input_sha(input_text) or not out.exists():
        return None
    return RunRecord(workdir / f"{name}.in", out, float(info.get("seconds", 0.0)), 0)


def run_qe(executable: str, input_text: str, workdir: str | Path, name: str, *, nprocs: int = 1,
           npool: int | None = None, timeout: float | None = None, nice: int = 0,
           extra_args: tuple[str, ...] = (), check: bool = True, resume: bool = False,
           recover_text: str | None = None) -> RunRecord:
    """Run ``executable`` (e.g. 'pw.x') on ``input_text`` in ``workdir``; inputs and outputs are kept.

    ``nprocs`` > 1 launches through mpirun; ``npool`` adds ``-nk``. The output file appears only when the
    process ended (written as ``<name>.out.partial`` meanwhile). Non-zero exit → QERunError when
    ``check`` (else the caller inspects ``returncode``, e.g. to report an unconverged SCF precisely).
    A successful run leaves ``<name>.done.json`` (input sha256, seconds). With ``resume`` a run already done
    with the same input is not repeated, and a run that was killed (``<name>.out.partial`` left) restarts
    from ``recover_text`` when given (ph.x ``recover=.true.``: the finished irreducible q are kept).
    """
    exe = find_executable(executable)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if resume:
        done = finished_run(workdir, name, input_text)
        if done is not None:
            return done
    inp = workdir / f"{name}.in"
    out = workdir / f"{name}.out"
    partial = workdir / f"{name}.out.partial"
    err = workdir / f"{name}.err"
    marker = workdir / f"{name}.done.json"
    marker.unlink(missing_ok=True)
    sha = _input_sha(input_text)
    if resume and recover_text is not None and partial.exists():
        os.replace(partial, workdir / f"{name}.out.killed")
        input_text = recover_text
    atomic_write_text(inp, input_text)
    cmd = [exe, "-in", inp.name, *extra_args]
    if npool and npool > 1:
        cmd[1:1] = ["-nk", str(npool)]
    if nprocs > 1:
        cmd = [find_executable("mpirun"), "-np", str(nprocs), *cmd]
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    t0 = time.perf_counter()
    with open(partial, "w") as fo, open(err, "w") as fe:
        try:
            proc = subprocess.run(cmd, cwd=workdir, stdout=fo, stderr=fe, env=_env(), timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise QERunError(f"{executable} in {workdir} exceeded {timeout} s") from None
    dt = time.perf_counter() - t0
    os.replace(partial, out)
    if proc.returncode != 0 and check:
        tail = "".join(out.read_text(errors="replace").splitlines(keepends=True)[-5:])
        raise QERunError(f"{executable} exited with status {proc.returncode} in {workdir} "
                         f"(see {out.name}, {err.name}): {' '.join(tail.split())[-300:]}")
    if proc.returncode == 0:
        atomic_write_json(marker, {"input_sha256": sha, "seconds": dt})
    return RunRecord(inp, out, dt, proc.returncode)


# ---------------------------------------------------------------------------------- resumable sample loops
def load_result(sample_dir: str | Path) -> dict | None:
    """The finished result of a sample directory, or None when absent or unreadable (then recomputed)."""
    p = Path(sample_dir) / "result.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


@dataclass(frozen=True)
class LoopReport:
    """What a sample loop did: indices computed now, reused from disk, and failures (index → message)."""

    computed: tuple[int, ...]
    reused: tuple[int, ...]
    failed: dict


def _write_result(compute, sample_dir, i: int, skip_finished: bool) -> str | None:
    """One sample on a worker: compute, then the atomic ``result.json`` (the "finished" marker); returns None,
    or the sample's one-line error (returned, not raised: a failed sample is a result, not a task failure for
    Dask to log with a traceback). A task that Dask reruns after losing a worker whose completion report never
    arrived finds its marker and stops."""
    if skip_finished and load_result(sample_dir(i)) is not None:
        return None
    try:
        atomic_write_json(Path(sample_dir(i)) / "result.json", compute(i))
    except Exception as e:  # noqa: BLE001 - recorded and reported, other samples continue
        return f"{type(e).__name__}: {e}"
    return None


def run_samples(indices: Iterable[int], sample_dir: Callable[[int], Path], compute: Callable[[int], dict],
                *, workers: int = 1, resume: bool = True, desc: str = "samples",
                progress: bool = True, scheduler=None) -> LoopReport:
    """Run ``compute(i)`` for every index not finished yet; each result dict is written atomically to
    ``sample_dir(i)/result.json`` (the marker). Exceptions are recorded per sample, never lose others.

    Samples run as Dask tasks (:mod:`phonjax.dataset.cluster`): ``scheduler`` None → ``workers`` threads of a
    local cluster in this process (each QE run is its own process); an address or a jobqueue mapping → that
    cluster (``compute`` and ``sample_dir`` are then pickled to its workers).
    """
    indices = list(indices)
    reused, todo = [], []
    for i in indices:
        if resume and load_result(sample_dir(i)) is not None:
            reused.append(i)
        else:
            todo.append(i)
    computed, failed = [], {}

    bar = None
    if progress and todo:
        try:
            from tqdm.auto import tqdm  # noqa: PLC0415
            bar = tqdm(total=len(indices), initial=len(reused), desc=desc, unit="sample")
        except ImportError:
            bar = None
    from distributed import as_completed  # Dask: imported only when samples run
    from phonjax.dataset.cluster import dask_client

    with dask_client(scheduler, workers) if todo else nullcontext() as client:
        futs = {client.submit(_write_result, compute, sample_dir, i, resume, pure=False,
                              key=f"{desc}-{i}-{uuid4().hex}"): i for i in todo}
        for f in (as_completed(futs) if todo else ()):
            i = futs[f]
            try:
                err = f.result()
            except Exception as e:  # noqa: BLE001 - e.g. the task was lost more often than Dask allows
                err = f"{type(e).__name__}: {e}"
            if err is None:
                computed.append(i)
            else:
                failed[i] = err
            if bar is not None:
                bar.update(1)
                bar.set_postfix(failed=len(failed))
    if bar is not None:
        bar.close()
    return LoopReport(tuple(sorted(computed)), tuple(sorted(reused)), failed)
