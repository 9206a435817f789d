"""No credential of a tracking URI reaches MLflow params, tags, artifacts, local files or the output."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from mlflow import MlflowClient

from ssnas_core.config import redact_uri

from .conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SECRET = "Pa55-w0rd-" + uuid.uuid4().hex[:8]


def test_redact_uri_hides_only_the_password() -> None:
    assert redact_uri("postgresql+psycopg://user:s3cret@db:5432/mlflow") == "postgresql+psycopg://user:***@db:5432/mlflow"
    assert redact_uri("http://alice:p%40ss@mlflow:5000") == "http://alice:***@mlflow:5000"
    assert redact_uri("sqlite:///./mlflow.db") == "sqlite:///./mlflow.db"
    assert redact_uri("http//::bad") == "http//::bad"


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh PostgreSQL database as the MLflow store, reached with a password (trust auth ignores it)."""
    name = f"ssnas_secret_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:5432/{name}", tmp_path
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _ssnas(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([sys.executable, "-m", "ssnas_core.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**env, "PYTHONPATH": str(ROOT), "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": "1"})


def test_a_password_in_the_tracking_uri_is_stored_nowhere(store) -> None:
    uri, work = store
    search = _ssnas("search", *TINY, "--epochs", "1", "--tracking-uri", uri, cwd=work)
    assert search.returncode == 0, search.stderr[-2000:]
    run_id = search.stdout.strip().splitlines()[-1]
    ft = _ssnas("finetune", "--search-run", run_id, "--epochs", "1", "--batch-size", "16", "--device", "cpu",
                "--tracking-uri", uri, cwd=work)
    assert ft.returncode == 0, ft.stderr[-2000:]
    for proc in (search, ft):
        assert SECRET not in proc.stdout + proc.stderr
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 2
    for run in runs:
        assert run.data.params["tracking.tracking_uri"] == redact_uri(uri)
        text = repr(run.data.params) + repr(run.data.tags)
        assert SECRET not in text
        dst = work / "artifacts" / run.info.run_id
        client.download_artifacts(run.info.run_id, "", str(dst))
        for path in [*dst.rglob("*"), *(work / "ssnas-runs").rglob("*")]:  # logged files and local checkpoints
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path


def test_resume_asks_for_the_store_whose_password_was_not_saved(monkeypatch) -> None:
    from ssnas_core.config import RunConfig, flatten, shareable, with_overrides
    from ssnas_core.errors import ConfigError
    from ssnas_core.workflows.search import _resume_config

    cfg = with_overrides(RunConfig(), {"tracking.tracking_uri": f"postgresql://u:{SECRET}@db/mlflow"})
    state = {"config": shareable(flatten(cfg))}
    assert SECRET not in repr(state)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ConfigError, match="pass --tracking-uri again or set MLFLOW_TRACKING_URI"):
        _resume_config({}, state)
    again = _resume_config({"tracking.tracking_uri": f"postgresql://u:{SECRET}@db/mlflow"}, state)
    assert again.tracking.tracking_uri.endswith(f"{SECRET}@db/mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"postgresql://u:{SECRET}@db/mlflow")
    assert _resume_config({}, state).tracking.tracking_uri == ""  # the environment's store
