"""The MLflow adapter: runs through ``MlflowClient`` (``tracking/`` is the only package of ssnas that imports mlflow).

It talks to the store through ``MlflowClient`` only, never the fluent API, so
no ``atexit`` hook can mark a crashed run FINISHED (mlflow/mlflow#3932): the
caller ends every run explicitly with FINISHED, FAILED or KILLED. Resume is
safe to replay: identical params are accepted, changed ones are refused before
MLflow sees them, and metric steps already in the store are not sent twice.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ssnas_core.errors import TrackingError
from ssnas_core.tracking.mlflow_store import check_reachable, client_for, one_line, redact, sqlite_path, store_errors

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from ssnas_core.data.lineage import DataInput

END_STATUSES = ("FINISHED", "FAILED", "KILLED")
_PARAMS_PER_BATCH = 100  # mlflow.utils.validation.MAX_PARAMS_TAGS_PER_BATCH
# The experiment kind MLflow 3 defines for training runs (the runs table with charts). MLflow 3.17's UI does
# not choose its view from it but from a browser preference: `mlflow ui --app-name ssnas` (tracking/mlflow_ui.py)
# sets that one; other UIs and clients may read the tag.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
_METRICS_PER_BATCH = 1000  # mlflow.utils.validation.MAX_METRICS_PER_BATCH
_MAX_PARAM_LENGTH = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
_BAD_KEY_CHARS = re.compile(r"[^/\w.\- :]")  # mlflow.utils.validation (non-Windows)


def context_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """``tags`` with MLflow's standard context (source name and type, git commit when run from a checkout,
    user), resolved by MLflow's own context providers as its fluent API does, and the software versions."""
    import torch
    from mlflow.tracking.context.registry import resolve_tags

    from ssnas_core import __version__

    versions = {"ssnas.version": __version__, "ssnas.torch_version": torch.__version__,
                "ssnas.cuda_version": torch.version.cuda or "none"}
    try:
        resolved = resolve_tags({**versions, **{k: str(v) for k, v in tags.items()}})
    except Exception:  # noqa: BLE001 - context is a nicety; a provider's failure must not stop a run
        resolved = {**versions, **tags}
    return {k: str(v) for k, v in resolved.items()}


def metric_key(name: str) -> str:
    """Make ``name`` a valid MLflow metric key: ``"->"`` becomes ``"-"``, others ``"_"``.

    MLflow accepts only alphanumerics and ``_ - . : / space``, so an edge named
    ``0->2`` in ``alpha/normal/0->2/skip_connect`` is logged as ``0-2``.
    """
    return _BAD_KEY_CHARS.sub("_", name.replace("->", "-"))


def _get_run(client: MlflowClient, tracking_uri: str, run_id: str) -> Run:
    """Fetch a run; an unknown id is a ``TrackingError`` that names it."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            msg = f"MLflow run {run_id!r} not found at {redact(tracking_uri)}"
            raise TrackingError(f"{msg}; check the run id and --tracking-uri") from exc
        raise TrackingError(f"MLflow get_run({run_id}) failed: {one_line(exc)}") from exc


def _ensure_experiment(client: MlflowClient, tracking_uri: str, name: str) -> str:
    """Return the id of experiment ``name``, creating it if needed.

    For a SQLite store the artifact location is made explicit, ``mlartifacts``
    next to the database file, so artifacts never depend on the working
    directory (MLflow's default is ``./mlruns`` resolved against the cwd).
    """
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        db = sqlite_path(tracking_uri)
        location = (db.absolute().parent / "mlartifacts").as_uri() if db else None
        try:
            return str(client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND))
        except MlflowException as exc:  # another worker created it first
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise exc
    if experiment.lifecycle_stage != "active":
        msg = f"MLflow experiment {name!r} is deleted"
        raise TrackingError(f"{msg}; restore it (mlflow experiments restore) or pass another --experiment")
    if "mlflow.experimentKind" not in experiment.tags:  # made before ssnas tagged its experiments
        for key, value in EXPERIMENT_KIND.items():
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return str(experiment.experiment_id)


class MlflowTracker:
    """A ``Tracker`` that writes to one MLflow run through ``MlflowClient``.

    Attributes:
        wants_artifacts: Always True.
        run_id: The MLflow run id.
        experiment_id: The run's experiment id.
        tracking_uri: The store's URI.
    """

    wants_artifacts = True

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        experiment_id: str,
        tracking_uri: str,
        params: Mapping[str, str] | None = None,
        resumed: bool = False,
    ) -> None:
        """Wrap an existing run; use ``start`` or ``resume`` instead."""
        self._client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.tracking_uri = tracking_uri
        self._params: dict[str, str] = dict(params or {})
        self._resumed = resumed
        self._floor: dict[str, int] = {}  # key -> last step stored before resume
        self._ended = False

    @classmethod
    def start(cls, tracking_uri: str, experiment: str, run_name: str | None, tags: Mapping[str, str]) -> MlflowTracker:
        """Create a RUNNING run in ``experiment`` (created if missing) with ``tags``.

        Raises:
            TrackingError: The store refuses or cannot be reached.
        """
        check_reachable(tracking_uri)
        client = client_for(tracking_uri)
        with store_errors("run creation", tracking_uri):
            experiment_id = _ensure_experiment(client, tracking_uri, experiment)
            run = client.create_run(experiment_id, tags=context_tags(tags), run_name=run_name)
        return cls(client, run.info.run_id, experiment_id, tracking_uri)

    @classmethod
    def resume(cls, tracking_uri: str, run_id: str) -> MlflowTracker:
        """Reopen run ``run_id`` (set it RUNNING) to continue logging into it.

        Raises:
            TrackingError: The run does not exist or is already FINISHED.
        """
        check_reachable(tracking_uri)
        client = client_for(tracking_uri)
        run = _get_run(client, tracking_uri, run_id)
        if run.info.status == "FINISHED":
            raise TrackingError(f"MLflow run {run_id} is already finished; it cannot be resumed, start a new run")
        with store_errors("resume", tracking_uri):
            client.update_run(run_id, status="RUNNING")
        return cls(client, run_id, run.info.experiment_id, tracking_uri, run.data.params, True)

    def log_params(self, params: Mapping[str, object]) -> None:
        """Log params once; re-logging an identical value is a no-op.

        Raises:
            TrackingError: A value differs from the stored one (keys listed as
                ``key: old -> new``), or a value is too long for MLflow.
        """
        from mlflow.entities import Param

        values = {str(k): str(v) for k, v in params.items()}
        old = self._params
        changed = sorted(f"{k}: {old[k]!r} -> {v!r}" for k, v in values.items() if k in old and old[k] != v)
        if changed:
            msg = f"run {self.run_id} was logged with other params ({'; '.join(changed)})"
            raise TrackingError(f"{msg}; resume with the original configuration or start a new run")
        too_long = [k for k, v in values.items() if len(v) > _MAX_PARAM_LENGTH]
        if too_long:
            msg = f"values of params {too_long} are longer than MLflow's {_MAX_PARAM_LENGTH} characters"
            raise TrackingError(f"{msg}; log them as an artifact instead")
        new = [Param(k, v) for k, v in values.items() if k not in self._params]
        for i in range(0, len(new), _PARAMS_PER_BATCH):
            with store_errors("log_params", self.tracking_uri):
                self._client.log_batch(self.run_id, params=new[i : i + _PARAMS_PER_BATCH])
        self._params.update(values)

    def _floor_of(self, key: str) -> int | None:
        """The last step of ``key`` stored before resume (looked up once per key)."""
        if not self._resumed:
            return None
        if key not in self._floor:
            with store_errors("get_metric_history", self.tracking_uri):
                history = self._client.get_metric_history(self.run_id, key)
            self._floor[key] = max((m.step for m in history), default=-1)
        return self._floor[key]

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log finite ``metrics`` at ``step``; skips NaN/inf and steps stored before resume.

        Keys pass through ``metric_key`` (MLflow rejects e.g. ``>``).
        """
        self.log_metric_steps([(metrics, step)])

    def log_metric_steps(self, rows: Sequence[tuple[Mapping[str, float], int]]) -> None:
        """Like ``log_metrics`` for many steps: one ``log_batch`` call per 1,000 values."""
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        batch = []
        for metrics, step in rows:
            for name, value in metrics.items():
                key, number = metric_key(str(name)), float(value)
                floor = self._floor_of(key)
                if math.isfinite(number) and (floor is None or step > floor):
                    batch.append(Metric(key, number, timestamp, int(step)))
        for i in range(0, len(batch), _METRICS_PER_BATCH):
            with store_errors("log_metrics", self.tracking_uri):
                self._client.log_batch(self.run_id, metrics=batch[i : i + _METRICS_PER_BATCH])

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        """Upload the file or folder ``local_path`` under ``artifact_path``."""
        with store_errors(f"log_artifact({local_path})", self.tracking_uri):
            if Path(local_path).is_dir():
                self._client.log_artifacts(self.run_id, str(local_path), artifact_path)
            else:
                self._client.log_artifact(self.run_id, str(local_path), artifact_path)

    def log_image(self, path: str | Path, key: str, step: int) -> None:
        """Log the PNG at ``path`` as image ``key`` at ``step`` (shown with a step slider in the MLflow UI)."""
        from PIL import Image

        with store_errors(f"log_image({key})", self.tracking_uri), Image.open(path) as image:
            self._client.log_image(self.run_id, image.convert("RGB"), key=key, step=step, synchronous=True)

    def download_artifact(self, artifact_path: str, dst_dir: str | Path) -> Path | None:
        """Download ``artifact_path`` into ``dst_dir``; None when the run lacks it."""
        return _download(self._client, self.tracking_uri, self.run_id, artifact_path, dst_dir)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set (or overwrite) run tags."""
        from mlflow.entities import RunTag

        items = [RunTag(str(k), str(v)) for k, v in tags.items()]
        for i in range(0, len(items), _PARAMS_PER_BATCH):
            with store_errors("set_tags", self.tracking_uri):
                self._client.log_batch(self.run_id, tags=items[i : i + _PARAMS_PER_BATCH])

    def log_inputs(self, inputs: Sequence[DataInput]) -> None:
        """Log each split as an MLflow dataset input (name, digest, local source, profile) with its context tag,
        so the runs table's Dataset column shows it; MLflow keeps one record per dataset and context."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        records = [DatasetInput(Dataset(i.name, i.digest, "local", json.dumps({"uri": i.source}),
                                        profile=json.dumps(dict(i.profile), sort_keys=True)),
                                tags=[InputTag("mlflow.data.context", i.context)]) for i in inputs]
        if records:
            with store_errors("log_inputs", self.tracking_uri):
                self._client.log_inputs(self.run_id, datasets=records)

    def end(self, status: str = "FINISHED") -> None:
        """Mark the run terminated with ``status``; later calls do nothing.

        Raises:
            ValueError: ``status`` is not FINISHED, FAILED or KILLED.
        """
        if status not in END_STATUSES:
            raise ValueError(f"run status {status!r} is not one of {END_STATUSES}")
        if self._ended:
            return
        with store_errors(f"ending run {self.run_id} as {status}", self.tracking_uri):
            self._client.set_terminated(self.run_id, status)
        self._ended = True


def _download(client: MlflowClient, uri: str, run_id: str, artifact_path: str, dst_dir: str | Path) -> Path | None:
    """Download one artifact of a run, or return None when it does not exist."""
    parent, _, _ = artifact_path.rstrip("/").rpartition("/")
    with store_errors(f"list_artifacts({run_id})", uri):
        listed = {f.path for f in client.list_artifacts(run_id, parent or None)}
    if artifact_path.rstrip("/") not in listed:
        return None
    Path(dst_dir).mkdir(parents=True, exist_ok=True)
    with store_errors(f"download of {artifact_path} from run {run_id}", uri):
        return Path(client.download_artifacts(run_id, artifact_path, str(dst_dir)))


def download_artifact(tracking_uri: str, run_id: str, artifact_path: str, dst_dir: str | Path) -> Path | None:
    """Download ``artifact_path`` of run ``run_id``; None when the run lacks it."""
    return _download(client_for(tracking_uri), tracking_uri, run_id, artifact_path, dst_dir)


def get_run_info(tracking_uri: str, run_id: str) -> dict[str, Any]:
    """Describe a run for the CLI.

    Returns:
        ``run_id``, ``experiment_id``, ``run_name``, ``status``, ``artifact_uri``,
        ``start_time``/``end_time`` (ms), ``tags`` and ``params`` (dicts of str).

    Raises:
        TrackingError: The run does not exist or the store is unreachable.
    """
    check_reachable(tracking_uri)
    run = _get_run(client_for(tracking_uri), tracking_uri, run_id)
    return {
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "run_name": run.info.run_name,
        "status": run.info.status,
        "artifact_uri": run.info.artifact_uri,
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        "tags": dict(run.data.tags),
        "params": dict(run.data.params),
    }
