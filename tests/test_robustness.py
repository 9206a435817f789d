"""Interrupted searches resume exactly; NaN fails the run and keeps the last good checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from ssnas_core.checkpoint import load_checkpoint, read_checkpoint
from ssnas_core.cli import main

from .conftest import TINY

EPOCHS = "4"


def _spawn(args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "ssnas_core.cli", "search", *args], cwd=cwd,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_checkpoint(work: Path, proc: subprocess.Popen[bytes], min_epoch: int,
                         ignore: frozenset[Path] = frozenset()) -> Path:
    deadline = time.time() + 240
    while time.time() < deadline:
        for ckpt in work.glob("ssnas-runs/*/checkpoints/last.ckpt"):
            if ckpt.parents[1] in ignore:
                continue
            try:
                if read_checkpoint(ckpt)["engine"]["epoch"] >= min_epoch:
                    return ckpt.parents[1]
            except Exception:
                pass  # being replaced right now
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


def _final_alphas(run_dir: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "artifacts" / "supernet.pt", weights_only=True)
    return {k: state[k] for k in ("alpha_normal", "alpha_reduce")}


def test_killed_search_resumes_into_the_same_run_with_identical_result(workdir, capsys) -> None:
    assert main(["search", *TINY, "--epochs", EPOCHS, "--experiment", "straight"]) == 0
    straight_id = capsys.readouterr().out.strip().splitlines()[-1]
    straight = _final_alphas(workdir / "ssnas-runs" / straight_id)

    proc = _spawn([*TINY, "--epochs", EPOCHS, "--experiment", "killed"], workdir)
    run_dir = _wait_for_checkpoint(workdir, proc, min_epoch=1, ignore=frozenset({workdir / "ssnas-runs" / straight_id}))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_id = run_dir.name
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    assert client.get_run(run_id).info.status == "RUNNING"  # SIGKILL leaves it so; resume picks it up

    assert main(["search", "--resume", run_id]) == 0
    resumed = _final_alphas(run_dir)
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run_id, "search/loss_bt")]
    assert sorted(steps) == list(range(4 * int(EPOCHS)))  # every step once, none replayed twice
    epochs = [m.step for m in client.get_metric_history(run_id, "alpha/normal/0-2/skip_connect")]
    assert sorted(epochs) == list(range(int(EPOCHS)))


def test_sigterm_ends_the_run_killed_and_keeps_the_checkpoint(workdir) -> None:
    proc = _spawn([*TINY, "--epochs", "50"], workdir)
    run_dir = _wait_for_checkpoint(workdir, proc, min_epoch=1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err.decode()[-2000:]
    assert "resume with --resume" in err.decode()
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    assert client.get_run(run_dir.name).info.status == "KILLED"
    assert load_checkpoint(run_dir / "checkpoints")["engine"]["epoch"] >= 1


def test_a_sigterm_swallowed_by_a_finaliser_is_delivered_again(monkeypatch) -> None:
    """Python may run the handler inside a finaliser, which drops what it raises: the run must still stop."""
    from ssnas_core import cli

    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    previous = signal.getsignal(signal.SIGTERM)
    ran = []

    class Finalised:
        def __del__(self) -> None:
            ran.append(True)
            signal.raise_signal(signal.SIGTERM)  # the handler runs at once, inside this finaliser

    try:
        cli.install_interrupt_handlers()
        with pytest.raises(cli._Terminated):  # only a second delivery can reach here
            Finalised()  # dropped at once: what its __del__ raises is dropped
            for _ in range(500):  # the run goes on; the signal comes again within a moment
                time.sleep(0.01)
        assert ran, "the finaliser did not run"
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_nan_loss_fails_the_run_and_keeps_the_last_good_checkpoint(workdir, monkeypatch, capsys) -> None:
    from ssnas_core.search import engine as engine_module

    original = engine_module.SearchEngine.train_step

    def poisoned(self, vw):
        loss = original(self, vw)
        return loss * float("nan") if self.epoch == 1 else loss

    monkeypatch.setattr(engine_module.SearchEngine, "train_step", poisoned)
    assert main(["search", *TINY, "--epochs", "3"]) == 1
    err = capsys.readouterr().err
    assert "diverged at step 4" in err
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([client.get_experiment_by_name("ssnas-synthetic").experiment_id])
    assert run.info.status == "FAILED" and run.data.tags["ssnas.diverged_at_step"] == "4"
    state = load_checkpoint(next(workdir.glob("ssnas-runs/*/checkpoints")))
    assert state["engine"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["engine"]["objective"].values() if v.is_floating_point())
