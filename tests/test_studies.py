"""Optuna studies against the machine's real PostgreSQL: many workers, a killed worker, resume, bad input.

These tests need PostgreSQL on 127.0.0.1:5432 (trust auth); in CI they fail, not skip, when it is missing.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import psycopg
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from ssnas_core.cli import main
from ssnas_core.search_space.supernet import Supernet

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
TRIAL = ["--dataset", "synthetic", "--limit-train", "64", "--batch-size", "16", "--device", "cpu", "--width", "4"]


_STORAGES: dict[str, optuna.storages.RDBStorage] = {}


def _rdb(url: str) -> optuna.storages.RDBStorage:
    """One engine per database for the whole test (polling must not open a pool per call)."""
    if url not in _STORAGES:
        _STORAGES[url] = optuna.storages.RDBStorage(url, engine_kwargs={"pool_size": 1, "max_overflow": 1})
    return _STORAGES[url]


@pytest.fixture
def pg(tmp_path, monkeypatch):
    """Two fresh PostgreSQL databases (Optuna storage, MLflow store) and a work dir with a genotype.

    Every process keeps its database pools small (PostgreSQL allows 100 connections in all).
    """
    monkeypatch.setenv("MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", "1")
    monkeypatch.setenv("MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW", "2")
    names = [f"ssnas_test_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        for name in names:
            conn.execute(f"CREATE DATABASE {name}")
    storage, store = (f"postgresql+psycopg://postgres@127.0.0.1:5432/{n}" for n in names)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    MlflowClient(store).search_experiments()  # create the MLflow schema once, before workers race for it
    (tmp_path / "g.json").write_text(Supernet(1, 4).genotype().to_json())
    yield storage, store, tmp_path
    for rdb in _STORAGES.values():
        rdb.engine.dispose()
    _STORAGES.clear()
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        for name in names:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _study(cmd: str, storage: str, cwd: Path, *extra: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "ssnas_core.cli", "study", cmd, "tune_finetune", "--storage", storage,
            "--study-name", "s", "--genotype", "g.json", *TRIAL, *extra]
    return subprocess.Popen(args, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_study(storage: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        if "s" in optuna.get_all_study_names(_rdb(storage)):
            study = optuna.load_study(study_name="s", storage=_rdb(storage))
            if study.user_attrs.get("mlflow_parent_run_id"):
                return
        assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
        time.sleep(0.5)
    raise AssertionError("the study never appeared")


def _runs_by_trial(store: str) -> dict[str, list]:
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("ssnas-study-s")
    out: dict[str, list] = {}
    for run in client.search_runs([exp.experiment_id], "tags.`ssnas.study` = 's'", max_results=1000):
        if "ssnas.trial" in run.data.tags:
            out.setdefault(run.data.tags["ssnas.trial"], []).append(run)
    return out


def test_four_workers_share_one_study_and_each_trial_has_one_run(pg) -> None:
    storage, store, work = pg
    first = _study("run", storage, work, "--n-trials", "8", "--epochs", "1", "--pruner", "none")
    _wait_for_study(storage, first)
    workers = [first] + [_study("worker", storage, work, "--n-trials", "8") for _ in range(3)]
    for proc in workers:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err.decode()[-3000:]
    study = optuna.load_study(study_name="s", storage=_rdb(storage))
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert 8 <= len(done) <= 11  # in-flight trials of other workers may finish after the 8th
    assert len({tuple(sorted(t.params.items())) for t in done}) == len(done)  # no two workers drew the same
    assert sorted(t.number for t in study.trials) == list(range(len(study.trials)))
    runs = _runs_by_trial(store)
    parent = study.user_attrs["mlflow_parent_run_id"]
    for t in done:
        (run,) = runs[str(t.number)]  # exactly one MLflow run per trial
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert float(run.data.params["finetune.gamma"]) == pytest.approx(t.params["gamma"])
        assert float(run.data.params["finetune.tau"]) == pytest.approx(t.params["tau"])
        assert run.data.metrics["trial/value"] == pytest.approx(t.value)
        assert run.info.status == "FINISHED"


def test_a_killed_worker_trial_fails_is_retried_and_resumes(pg) -> None:
    storage, store, work = pg
    # Trials long enough that the first worker is still in its second trial when the second worker's first trial
    # has checkpointed: that takes the second worker about 13 s after its trial opens (start-up, data, MLflow run)
    # on a loaded machine, which 10 epochs of these trials (5 s) did not cover.
    common = ("--n-trials", "3", "--epochs", "40", "--heartbeat", "1", "--pruner", "none")
    first = _study("run", storage, work, *common)
    _wait_for_study(storage, first)
    victim = _study("worker", storage, work, *common)
    deadline = time.time() + 300
    target = None
    while time.time() < deadline and target is None:
        study = optuna.load_study(study_name="s", storage=_rdb(storage))
        running = [t.number for t in study.trials if t.state == TrialState.RUNNING]
        ready = [n for n in running if (work / "ssnas-runs" / "studies" / "s" / f"trial_{n}" / "last.ckpt").exists()]
        if len(running) == 2 and len(ready) == 2:
            target = running
        time.sleep(0.2)
    assert target, "two trials never ran at once"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    _, err = first.communicate(timeout=900)
    assert first.returncode == 0, err.decode()[-3000:]
    study = optuna.load_study(study_name="s", storage=_rdb(storage))
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1
    retried = [t for t in study.trials if t.system_attrs.get("retry_history") == [failed[0].number]]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) >= 3
    (run,) = _runs_by_trial(store)[str(failed[0].number)]  # the retry continued the same MLflow run
    assert run.data.tags["ssnas.retries"] == "1" and int(run.data.tags["ssnas.resumed_from_epoch"]) >= 1
    assert run.info.status == "FINISHED"


def test_a_resumed_study_continues_its_numbering(pg) -> None:
    storage, store, work = pg
    args = ["study", "run", "tune_finetune", "--storage", storage, "--study-name", "s", "--genotype", "g.json",
            *TRIAL, "--epochs", "1", "--pruner", "none"]
    assert main([*args, "--n-trials", "2"]) == 0
    assert main([*args, "--n-trials", "3"]) == 0
    study = optuna.load_study(study_name="s", storage=_rdb(storage))
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert len(_runs_by_trial(store)) == 3
    # Trial 0 is the untuned fine-tune (paper defaults), enqueued once, not again on resume.
    assert study.trials[0].params == {"gamma": 2.0, "tau": 1.0, "lr": 0.025}
    assert [t.number for t in study.trials if t.user_attrs.get("ssnas.reference")] == [0]
    assert study.trials[1].params != study.trials[2].params  # the resumed sampler does not replay its draws


def test_a_diverged_trial_fails_without_stopping_the_worker(workdir, monkeypatch, capsys) -> None:
    import studies.tune_finetune as tune

    real = tune.run_trial

    def diverge_once(overrides, ctx, run):  # the first trial trains with a learning rate that must blow up
        first = not getattr(diverge_once, "done", False)
        diverge_once.done = True
        return real({**overrides, "finetune.lr": 1e8} if first else overrides, ctx, run)

    monkeypatch.setattr(tune, "run_trial", diverge_once)
    (workdir / "g.json").write_text(Supernet(1, 4).genotype().to_json())
    storage = f"sqlite:///{workdir / 'o.db'}"
    assert main(["study", "run", "tune_finetune", "--storage", storage, "--study-name", "d", "--genotype", "g.json",
                 *TRIAL, "--epochs", "1", "--n-trials", "2", "--pruner", "none"]) == 0
    study = optuna.load_study(study_name="d", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert study.metric_names == ["val balanced_acc (auc if multi-label)"]  # what optuna-dashboard shows
    err = capsys.readouterr().err  # one line per finished trial (and per epoch of each)
    assert len(re.findall(r"ssnas study: d: trial \d+ value \d\.\d{4} with ", err)) == 2, err[-2000:]
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("ssnas-study-d")
    (failed,) = client.search_runs([exp.experiment_id], "tags.`ssnas.trial` = '0'")
    assert failed.info.status == "FAILED"
    (done,) = client.search_runs([exp.experiment_id], "tags.`ssnas.trial` = '1'")  # named as ssnas's other runs
    assert done.info.run_name == "trial-tune_finetune-synthetic-rho1-s0-t1" and done.data.tags["ssnas.device"] == "cpu"
    # the study's parent run ends with the study, and says why
    (parent,) = client.search_runs([exp.experiment_id], "tags.`ssnas.study_role` = 'parent'")
    assert parent.info.status == "FINISHED" and parent.data.tags["ssnas.end_reason"] == "2 of 2 trials finished"
    # a timeout before the budget leaves it KILLED with the reason; resuming runs it again
    assert main(["study", "run", "tune_finetune", "--storage", storage, "--study-name", "d", "--genotype", "g.json",
                 *TRIAL, "--epochs", "1", "--n-trials", "4", "--pruner", "none", "--timeout", "0.001"]) == 0
    parent = client.get_run(parent.info.run_id)
    assert parent.info.status == "KILLED" and "of 4 trials finished" in parent.data.tags["ssnas.end_reason"]


@pytest.mark.parametrize("case", ["bad url", "unreachable", "unknown study", "unknown kind", "negative n-trials",
                                  "quote in the study name"])
def test_bad_storage_or_study_exits_2(case, pg, capsys) -> None:
    storage, _, _ = pg
    cmd, name, extra = "worker", "tune_finetune", []
    if case == "negative n-trials":
        cmd, extra = "run", ["--n-trials", "-1"]
    elif case == "quote in the study name":
        cmd, extra = "run", ["--study-name", "it's"]
    if case == "bad url":
        storage = "redis://nowhere"
    elif case == "unreachable":
        storage = "postgresql+psycopg://postgres@127.0.0.1:9/none"
    elif case == "unknown kind":
        cmd, name = "run", "tune_everything"
    code = main(["study", cmd, name, "--storage", storage, "--study-name", "nope", "--genotype", "g.json", *TRIAL,
                 *extra])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if line.startswith("ssnas: error:")]) == 1, err


SMALL = ["--dataset", "synthetic", "--limit-train", "64", "--batch-size", "16", "--device", "cpu",
         "--search.width", "4", "--search.batch-size", "8", "--search.epochs", "1", "--search.projector", "32-32",
         "--epochs", "1"]


def test_compare_methods_grid_feeds_the_report(workdir, capsys) -> None:
    args = ["study", "run", "compare_methods", "--storage", f"sqlite:///{workdir / 'o.db'}", "--study-name", "cmp",
            "--seeds", "1", *SMALL]
    assert main(args) == 0
    study = optuna.load_study(study_name="cmp", storage=f"sqlite:///{workdir / 'o.db'}")
    assert sorted(t.params["method"] for t in study.trials if t.state == TrialState.COMPLETE) == sorted(
        ["ours", "ssnas", "darts", "fairdarts", "resnet18-ce", "resnet18-focal-la"])
    capsys.readouterr()
    assert main(["report", "--experiment", "ssnas-study-cmp", "--out", str(workdir / "rep")]) == 0
    md = (workdir / "rep" / "report.md").read_text()
    for row in ["fairdarts-bt + focal-la", "darts-simclr + ce", "darts-ce + ce", "resnet18-ce", "resnet18-focal-la"]:
        assert f"| {row} | 1 |" in md, md
    # every searched row carries its search's fallback count (softmax never falls back), baselines a dash
    assert "| darts-simclr + ce | 1 | 0 |" in md and "| resnet18-ce | 1 | - |" in md, md
    assert re.search(r"\| fairdarts-bt \+ focal-la \| 1 \| \d \|", md), md


def test_tune_search_trials_search_then_finetune(workdir) -> None:
    storage = f"sqlite:///{workdir / 'o.db'}"
    assert main(["study", "run", "tune_search", "--storage", storage, "--study-name", "ts", "--n-trials", "2",
                 "--pruner", "none", *SMALL]) == 0
    study = optuna.load_study(study_name="ts", storage=storage)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 2 and {"lambda_bt", "w01"} <= set(done[0].params)
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("ssnas-study-ts")
    runs = client.search_runs([exp.experiment_id], "tags.`ssnas.trial` = '0'")
    assert len(runs) == 1 and "search.lambda_bt" in runs[0].data.params
