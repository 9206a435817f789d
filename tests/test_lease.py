"""One process owns a run: a second --resume of a live run is refused; a dead owner's lease is taken over."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from mlflow import MlflowClient

from ssnas_core.cli import main
from ssnas_core.lease import OWNER, acquire, read_owner, release

from .conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def _ssnas(work: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "ssnas_core.cli", *args], cwd=work, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def test_two_resumes_at_once_one_owner_then_a_dead_owners_lease_is_taken_over(workdir) -> None:
    uri = os.environ["MLFLOW_TRACKING_URI"]
    # a search killed with SIGKILL after its first epoch: resumable, its MLflow run left RUNNING
    first = _ssnas(workdir, "search", *TINY, "--epochs", "200")
    runs = workdir / "ssnas-runs"
    deadline = time.time() + 300
    while not list(runs.glob("*/checkpoints/last.ckpt")):
        assert first.poll() is None and time.time() < deadline
        time.sleep(0.2)
    run_id = next(runs.glob("*/checkpoints/last.ckpt")).parts[-3]
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    # the killed search's run is left RUNNING: `ssnas runs reconcile` ends it (and only it)
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "RUNNING"
    exp_id = client.get_run(run_id).info.experiment_id
    mine = client.create_run(exp_id, tags={"ssnas.owner": f"{socket.gethostname()}:{os.getpid()}"}).info.run_id
    remote = client.create_run(exp_id, tags={"ssnas.owner": "elsewhere:1"}).info.run_id
    assert main(["runs", "reconcile", "--tracking-uri", uri, "--dry-run"]) == 0
    assert client.get_run(run_id).info.status == "RUNNING"
    assert main(["runs", "reconcile", "--tracking-uri", uri]) == 0
    killed = client.get_run(run_id)
    assert killed.info.status == "KILLED" and "had exited" in killed.data.tags["ssnas.end_reason"]
    assert client.get_run(mine).info.status == "RUNNING" and client.get_run(remote).info.status == "RUNNING"
    # two resumes at once: one owns the run, the other is refused with one line naming host and pid
    a = _ssnas(workdir, "search", "--resume", run_id, "--device", "cpu")
    _wait_for(runs / run_id / OWNER, a)
    while read_owner(runs / run_id) != (socket.gethostname(), a.pid):
        assert a.poll() is None
        time.sleep(0.1)
    b = _ssnas(workdir, "search", "--resume", run_id, "--device", "cpu")
    out, err = b.communicate(timeout=300)
    assert b.returncode == 2, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("ssnas: error:")]
    assert len(lines) == 1 and f"pid {a.pid} on host {socket.gethostname()}" in lines[0], err
    assert "Traceback" not in err
    # the owner dies without cleaning up: the next resume takes its lease over and finishes
    os.kill(a.pid, signal.SIGKILL)
    a.wait()
    assert read_owner(runs / run_id) == (socket.gethostname(), a.pid)  # stale
    c = _ssnas(workdir, "search", "--resume", run_id, "--device", "cpu", "--search.stop-after", "3")
    out, err = c.communicate(timeout=600)
    assert c.returncode == 0, err[-2000:]
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["ssnas.owner"] == f"{socket.gethostname()}:{c.pid}"
    assert read_owner(runs / run_id) is None  # released


def test_a_lease_from_another_host_is_refused(tmp_path) -> None:
    (tmp_path / OWNER).write_text('{"host": "elsewhere", "pid": 1}')
    import pytest

    from ssnas_core.errors import ConfigError

    with pytest.raises(ConfigError, match="pid 1 on host elsewhere"):
        acquire(tmp_path, "r")
    (tmp_path / OWNER).unlink()
    assert acquire(tmp_path, "r").endswith(f":{os.getpid()}")
    release(tmp_path)
    assert not (tmp_path / OWNER).exists()


def test_is_held_tells_a_live_lease_from_a_free_one(tmp_path) -> None:
    from ssnas_core import lease

    run = tmp_path / "run"
    assert lease.is_held(run) is None  # never leased
    lease.acquire(run, "r")
    assert lease.is_held(run) is True
    lease.release(run)
    assert lease.is_held(run) is False
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], "
                               "os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
                               str(run / lease.LOCK)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert lease.is_held(run) is True  # another process holds it
    finally:
        holder.kill()
        holder.wait()
    assert lease.is_held(run) is False  # the kernel dropped the dead holder's lock
