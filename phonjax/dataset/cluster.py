"""Where QE samples run: a Dask cluster (``dask.distributed``), chosen by one value, ``scheduler``.

- ``None`` (default): a :class:`distributed.LocalCluster` in this process, ``workers`` threads (every sample is
  an external QE process with its own MPI ranks, so threads suffice and nothing is pickled). Nothing to start
  beforehand: the cluster lives as long as the run.
- ``"tcp://host:8786"`` (or any address a :class:`distributed.Client` accepts): an existing Dask scheduler, e.g.
  one started with ``dask scheduler`` / ``dask worker`` on a cluster's nodes.
- a mapping ``{"jobqueue": "slurm" | "pbs" | "sge" | "lsf" | "htcondor" | ..., "jobs": N, **kwargs}``: a
  ``dask_jobqueue.<Name>Cluster(**kwargs)`` (cores, memory, queue, walltime, job_extra_directives, ...),
  scaled to N batch jobs (``pip install dask-jobqueue``).

Resumability does not depend on the engine: a sample's ``result.json`` (written atomically by whoever ran it)
is the only "finished" marker, so a worker killed mid-sample loses nothing finished, and Dask reschedules the
sample it was running on another worker (``distributed.scheduler.allowed-failures`` times).
"""
from __future__ import annotations

from contextlib import contextmanager

__all__ = ["dask_client", "check_scheduler", "ClusterError", "JOBQUEUE_CLASSES"]

#: ``jobqueue:`` names and the dask_jobqueue classes they select
JOBQUEUE_CLASSES = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster",
                    "htcondor": "HTCondorCluster", "moab": "MoabCluster", "oar": "OARCluster"}


class ClusterError(ValueError):
    """A scheduler setting that cannot be used (unknown jobqueue kind, dask-jobqueue missing, bad address)."""


def _jobqueue_class(spec: dict):
    """The dask_jobqueue cluster class a ``scheduler:`` mapping names (ClusterError: unknown kind, or
    dask-jobqueue not installed)."""
    kind = str(spec.get("jobqueue", "")).lower()
    if kind not in JOBQUEUE_CLASSES:
        raise ClusterError(f"scheduler.jobqueue must be one of {', '.join(JOBQUEUE_CLASSES)}, got {kind!r}")
    try:
        import dask_jobqueue
    except ImportError:
        raise ClusterError("scheduler.jobqueue needs dask-jobqueue: pip install dask-jobqueue") from None
    return getattr(dask_jobqueue, JOBQUEUE_CLASSES[kind])


def _jobqueue_cluster(spec: dict):
    cls = _jobqueue_class(spec)
    cluster = cls(**{k: v for k, v in spec.items() if k not in ("jobqueue", "jobs")})
    cluster.scale(jobs=int(spec.get("jobs", 1)))
    return cluster


def check_scheduler(scheduler) -> None:
    """Fail early (ClusterError, one line) on a scheduler setting that cannot work: an unreachable address, an
    unknown jobqueue kind or a missing dask-jobqueue — before hours of QE that would end there. None (the
    local cluster) always works."""
    if scheduler is None:
        return
    if isinstance(scheduler, dict):
        _jobqueue_class(scheduler)
        return
    with dask_client(scheduler):
        pass


@contextmanager
def dask_client(scheduler=None, workers: int = 1):
    """A :class:`distributed.Client` for ``scheduler`` (see module docstring); closed (and a cluster it made
    shut down) on exit."""
    from distributed import Client, LocalCluster

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=1, threads_per_worker=max(1, int(workers)), processes=False,
                               dashboard_address=None)
        target = cluster
    elif isinstance(scheduler, dict):
        cluster = target = _jobqueue_cluster(scheduler)
    elif isinstance(scheduler, str) and scheduler.strip():
        target = scheduler.strip()
    else:
        raise ClusterError(f"scheduler must be an address, a jobqueue mapping or empty, got {scheduler!r}")
    try:
        client = Client(target, timeout="10s")
    except OSError as e:
        if cluster is not None:
            cluster.close()
        raise ClusterError(f"cannot reach the Dask scheduler {target!r}: {e}") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
