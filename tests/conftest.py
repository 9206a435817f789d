"""Shared fixtures: a tiny search that runs in seconds on the CPU."""

from __future__ import annotations

import os

import pytest

# A search small enough for CI: synthetic data, 64 images, width 4, batch 8 (4 steps per epoch).
TINY = ["--dataset", "synthetic", "--limit-train", "64", "--batch-size", "8", "--width", "4",
        "--search.projector", "32-32", "--device", "cpu"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in a temp dir with the embedded SQLite store there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    os.environ.pop("SSNAS_DATA_ROOT", None)
    return tmp_path
