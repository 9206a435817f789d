"""Opening MLflow runs for the commands (the only CLI module that touches the MLflow adapter)."""

from __future__ import annotations

from pathlib import Path

from ssnas_core.config import RunConfig
from ssnas_core.errors import CheckpointError
from ssnas_core.tracking.base import Tracker


def tracking_uri(cfg: RunConfig) -> str:
    from ssnas_core.tracking.mlflow_adapter import default_tracking_uri

    return cfg.tracking.tracking_uri or default_tracking_uri()


def resolve_experiment(cfg: RunConfig, dataset_name: str) -> str:
    """``--experiment``, else ``ssnas-<dataset>``."""
    return cfg.tracking.experiment or f"ssnas-{dataset_name}"


def open_tracker(cfg: RunConfig, experiment: str, tags: dict[str, str], resume: str | None) -> tuple[Tracker, str]:
    """Start a new MLflow run, or reopen ``resume``; returns the tracker and the run id."""
    from ssnas_core.tracking.mlflow_adapter import MlflowTracker

    uri = tracking_uri(cfg)
    if resume:
        tracker = MlflowTracker.resume(uri, resume)
    else:
        tracker = MlflowTracker.start(uri, experiment, None, tags)
    return tracker, tracker.run_id


def fetch_checkpoint(cfg: RunConfig, run_id: str, dst: Path) -> None:
    """Download the run's last checkpoint from MLflow into ``dst`` (resume on another machine)."""
    from ssnas_core.tracking.mlflow_adapter import download_artifact, get_run_info

    uri = tracking_uri(cfg)
    get_run_info(uri, run_id)  # raises a one-line TrackingError for an unknown run
    if download_artifact(uri, run_id, "checkpoints/last.ckpt", dst) is None:
        raise CheckpointError(f"run {run_id} has no checkpoint (checkpoints/last.ckpt) in MLflow nor in "
                              f"{dst}: it never finished an epoch; start a new search")
