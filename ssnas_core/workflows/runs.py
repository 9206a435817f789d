"""Opening MLflow runs for the workflows: experiment and run names, resume, how a run ends."""

from __future__ import annotations

import os
import socket
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ssnas_core.config import RunConfig
from ssnas_core.errors import CheckpointError, DivergenceError, TrialStopped
from ssnas_core.tracking.base import NullTracker, Tracker


def tracking_uri(cfg: RunConfig) -> str:
    from ssnas_core.tracking.mlflow_store import default_tracking_uri

    return cfg.tracking.tracking_uri or default_tracking_uri()


def resolve_experiment(cfg: RunConfig, dataset_name: str) -> str:
    """``--experiment``, else ``ssnas-<dataset>`` (the dataset's name made safe, see ``safe_name``)."""
    from ssnas_core.data.dataset import safe_name

    return cfg.tracking.experiment or f"ssnas-{safe_name(dataset_name)}"


def run_name(stage: str, method: str, cfg: RunConfig, dataset_name: str) -> str:
    """``<stage>-<method>-<dataset>-rho<factor>-s<seed>``, e.g. ``finetune-fairdarts-bt-ce-pneumoniamnist-rho10-s0``."""
    from ssnas_core.data.dataset import safe_name

    return f"{stage}-{method}-{safe_name(dataset_name)}-rho{cfg.data.imbalance_factor:g}-s{cfg.seed}"


def open_tracker(cfg: RunConfig, experiment: str, tags: dict[str, str], resume: str | None,
                 name: str | None = None, given: Tracker | None = None) -> tuple[Tracker, str]:
    """Start a new MLflow run, or reopen ``resume``; with tracking off, a NullTracker and a fresh (or the
    resumed) id; with a ``given`` tracker (``ssnas_core.api``), that one, tagged, with its ``run_id`` if it has
    one. Returns the tracker and the run id."""
    check_work_dir(Path(cfg.tracking.work_dir))  # before any run opens
    if given is not None:
        given.set_tags({**tags, "mlflow.runName": name or "", "ssnas.owner": owner_tag()})
        return given, str(getattr(given, "run_id", None) or resume or uuid.uuid4().hex)
    if not cfg.tracking.enabled:
        return NullTracker(), resume or uuid.uuid4().hex
    from ssnas_core.tracking.mlflow_adapter import MlflowTracker

    uri = tracking_uri(cfg)
    if resume:
        tracker = MlflowTracker.resume(uri, resume)
    else:
        tracker = MlflowTracker.start(uri, experiment, name, tags)
    tracker.set_tags({"ssnas.owner": owner_tag()})  # `ssnas runs reconcile` ends it if this process dies
    return tracker, tracker.run_id


def check_work_dir(folder: Path) -> None:
    """``--work-dir`` must be a folder this process can create files in, or one it can create; nothing is
    created here (the run's folder is made once its run exists, so a command refused later, e.g. for an
    unreachable tracking server, leaves no empty folder behind).

    Raises:
        ConfigError: a file stands on the path, or the folder (or its nearest existing parent) is not writable.
    """
    from ssnas_core.errors import ConfigError

    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--work-dir {folder} cannot be created: {existing} is a file; give a writable folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--work-dir {folder} is not writable ({existing} is not): give a writable folder")


def owner_tag() -> str:
    """``host:pid`` of this process, the owner of the runs it opens."""
    return f"{socket.gethostname()}:{os.getpid()}"


def fetch_checkpoint(cfg: RunConfig, run_id: str, dst: Path) -> None:
    """Download the run's last checkpoint from MLflow into ``dst`` (resume on another machine)."""
    from ssnas_core.tracking.mlflow_adapter import download_artifact, get_run_info

    uri = tracking_uri(cfg)
    get_run_info(uri, run_id)  # raises a one-line TrackingError for an unknown run
    if download_artifact(uri, run_id, "checkpoints/last.ckpt", dst) is None:
        raise CheckpointError(f"run {run_id} has no checkpoint (checkpoints/last.ckpt) in MLflow nor in "
                              f"{dst}: it never finished an epoch; start a new search")


@dataclass
class Outcome:
    """The status a run ends with; the body sets FINISHED when it completes."""

    status: str = "FAILED"


@contextmanager
def ending(tracker: Tracker) -> Iterator[Outcome]:
    """End the run however the body leaves: FINISHED if it says so, KILLED on an interrupt or a
    stopped trial, FAILED otherwise (with ``ssnas.diverged_at_step`` on divergence)."""
    outcome = Outcome()
    try:
        yield outcome
    except TrialStopped as stop:
        outcome.status = "KILLED"
        tracker.set_tags({"ssnas.trial_state": stop.reason, "ssnas.stopped_after_epoch": str(stop.epoch)})
        raise
    except KeyboardInterrupt:
        outcome.status = "KILLED"
        raise
    except DivergenceError as err:
        tracker.set_tags({"ssnas.diverged_at_step": str(err.step)})
        raise
    finally:
        tracker.end(outcome.status)
