"""Shared fixtures: a tiny search that runs in seconds on the CPU."""

from __future__ import annotations

import os

import pytest

# One thread per process, for this process and every subprocess a test starts: the tests' tensors are tiny, so a
# second thread only adds synchronisation, and scripts/test.sh runs two pytest workers on a 2-core machine.
# Measured on 2 cores: the whole suite in one process took 27 min with torch's default threads and 18.5 min with
# one. Set before torch is first imported; a value already in the environment wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

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


# The longest files first: scripts/test.sh hands whole files to two workers in collection order, so a long file
# collected last would run alone at the end (test_platform_parity.py alone takes about 3 minutes).
_LONGEST_FIRST = ("test_platform_parity.py", "test_platform.py", "test_studies.py", "test_robustness.py",
                  "test_mlflow_ui.py", "test_lease.py", "test_mlflow_adapter.py", "test_secrets.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
