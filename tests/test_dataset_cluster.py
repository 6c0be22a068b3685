"""QE samples through Dask (issue 17, item 3): the sample loop on a process-based Dask cluster survives a worker
killed mid-sample — no finished sample lost or duplicated, the killed one rerun — and equals the default local
run; a bad scheduler setting is one clear error. (The samples here are Python functions: the loop, not QE, is
under test.)"""
import json
import os
import signal
import time

import pytest

from phonjax.dataset.cluster import ClusterError, dask_client
from phonjax.dataset.runner import run_samples


def _compute(root):
    def compute(i):
        d = root / f"s{i}"
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "starts", "a") as f:
            f.write("x")
        if i == 3 and not (root / "killed").exists():
            (root / "killed").write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies mid-sample
        time.sleep(0.2)
        return {"i": i, "square": i * i}
    return compute


def test_killed_worker_loses_nothing_and_reruns_its_sample(tmp_path):
    from distributed import LocalCluster

    root = tmp_path / "cluster"
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        rep = run_samples(range(6), lambda i: root / f"s{i}", _compute(root), progress=False,
                          scheduler=cluster.scheduler_address)
    finally:
        cluster.close()
    assert (root / "killed").exists()  # the kill happened
    assert rep.computed == tuple(range(6)) and not rep.failed and not rep.reused
    for i in range(6):
        assert json.loads((root / f"s{i}" / "result.json").read_text()) == {"i": i, "square": i * i}
        assert (root / f"s{i}" / "starts").read_text() == ("xx" if i == 3 else "x")
    # a rerun finds everything finished: nothing recomputed
    again = run_samples(range(6), lambda i: root / f"s{i}", _compute(root), progress=False,
                        scheduler=None)
    assert again.reused == tuple(range(6)) and not again.computed
    # the default (a local cluster in this process) gives the same results
    local = tmp_path / "local"
    (local / "killed").parent.mkdir(parents=True, exist_ok=True)
    (local / "killed").write_text("")  # no kill in this process
    rep2 = run_samples(range(6), lambda i: local / f"s{i}", _compute(local), progress=False, workers=2)
    assert rep2.computed == tuple(range(6))
    for i in range(6):
        assert (local / f"s{i}" / "result.json").read_text() == (root / f"s{i}" / "result.json").read_text()


def test_bad_scheduler_settings_are_one_line_errors():
    with pytest.raises(ClusterError, match="scheduler.jobqueue must be one of slurm"):
        with dask_client({"jobqueue": "nope"}):
            pass
    with pytest.raises(ClusterError, match="scheduler must be an address"):
        with dask_client(3):
            pass


def test_unusable_scheduler_is_refused_before_any_qe_run(tmp_path, monkeypatch):
    """dataset and dfpt check the scheduler before their first QE run (a relaxation may take hours): an
    unreachable address or a bad jobqueue block is one ClusterError, and pw.x never starts."""
    import phonjax.dataset.dfpt as dfpt_mod
    from phonjax.dataset import DfptConfig, run_dfpt
    from phonjax.dataset.cluster import check_scheduler

    check_scheduler(None)
    with pytest.raises(ClusterError, match="jobqueue must be one of"):
        check_scheduler({"jobqueue": "nope"})
    with pytest.raises(ClusterError, match="cannot reach the Dask scheduler"):
        check_scheduler("tcp://127.0.0.1:1")
    ran = []
    monkeypatch.setattr(dfpt_mod, "_setup", lambda *a: (None, tmp_path, tmp_path, [], {}, tmp_path, {}))
    monkeypatch.setattr(dfpt_mod, "_relax", lambda *a: ran.append("relax"))
    monkeypatch.setattr(dfpt_mod, "_phonons", lambda *a: ran.append("phonons"))
    with pytest.raises(ClusterError, match="jobqueue must be one of"):
        run_dfpt("POSCAR", DfptConfig(split_q=True, scheduler={"jobqueue": "nope"}), tmp_path)
    assert ran == []
