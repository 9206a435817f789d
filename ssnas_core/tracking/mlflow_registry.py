"""Logging models with ``mlflow.pytorch`` and the model registry (champion alias), without the fluent API.

Order (RELIABILITY.md section 2): save locally, upload, verify the upload
(listing + sha256 tag), register, wait for READY, then move the ``champion``
alias only if the new version beats the current champion on the val metric.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ssnas_core.checkpoint import sha256_file
from ssnas_core.errors import TrackingError
from ssnas_core.tracking.mlflow_store import client_for, redact, store_errors

CHAMPION = "champion"


# The MLflow flavour's serialization, chosen explicitly: "pt2" is a torch.export program, which
# mlflow.pytorch.load_model checks for pickle payloads before torch.export.load; "pickle" (torch.save of the
# module) would run arbitrary code on load. MLflow 3.17's own default is pt2 outside Databricks, pickle inside.
SERIALIZATION = "pt2"
WEIGHTS_FILE = "data/model.pt2"  # what ssnas.model_sha256 is the hash of, inside the logged model


@dataclass(frozen=True)
class LoggedModelInfo:
    """A model logged by ``log_pytorch_model``: its MLflow 3 LoggedModel id, URI and weights hash."""

    model_id: str
    uri: str  # models:/<model_id>
    sha256: str


def log_pytorch_model(tracking_uri: str, run_id: str, model: Any, input_example: np.ndarray,
                      extra_files: list[Path], tags: dict[str, str] | None = None,
                      params: dict[str, str] | None = None, step: int = 0) -> LoggedModelInfo:
    """Log ``model`` as an MLflow 3 LoggedModel of run ``run_id`` (its Logged models; the experiment's Models tab).

    The model is saved locally in the ``pytorch`` flavour (``SERIALIZATION``, with signature, input example and
    ``extra_files``), uploaded to the LoggedModel's own artifact location, verified (listing), linked to the run
    as an output at ``step`` and finalized READY; a failure finalizes it FAILED. The sha256 of the weights file
    is set as ``ssnas.model_sha256`` (and the file it is of, ``ssnas.model_sha256_file``) on the model and on
    the run.
    """
    import mlflow.pytorch
    import torch
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model, infer_signature

    model = model.cpu().eval()
    with torch.no_grad():
        output = model(torch.from_numpy(input_example)).numpy()
    signature = infer_signature(input_example, output)
    client = client_for(tracking_uri)
    with store_errors("model logging", tracking_uri):
        experiment_id = client.get_run(run_id).info.experiment_id
        logged = client.create_logged_model(experiment_id, name="model", source_run_id=run_id, tags=tags,
                                            params=params, model_type="pytorch")
    try:
        with tempfile.TemporaryDirectory() as tmp, store_errors("model logging", tracking_uri):
            local = Path(tmp) / "model"
            # Explicit requirements: MLflow's inference imports the model in a subprocess (seconds per model).
            requirements = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}", "numpy"]
            meta = Model(artifact_path=logged.artifact_location, model_uuid=logged.model_id, run_id=run_id,
                         model_id=logged.model_id)
            mlflow.pytorch.save_model(model, str(local), mlflow_model=meta, signature=signature,
                                      input_example=input_example, extra_files=[str(p) for p in extra_files],
                                      pip_requirements=requirements, serialization_format=SERIALIZATION)
            sha = sha256_file(local / WEIGHTS_FILE)
            client.log_model_artifacts(logged.model_id, str(local))
            listed = {f.path for f in client.list_logged_model_artifacts(logged.model_id)}
            if "MLmodel" not in listed:
                raise TrackingError(f"model upload for run {run_id} is incomplete (no MLmodel); not registering it")
            hashes = {"ssnas.model_sha256": sha, "ssnas.model_sha256_file": WEIGHTS_FILE}
            client.set_logged_model_tags(logged.model_id, hashes)
            client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step)])
            client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    except BaseException:
        with contextlib.suppress(Exception):
            client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    client.set_tag(run_id, "ssnas.model_sha256", sha)
    client.set_tag(run_id, "ssnas.model_sha256_file", f"models:/{logged.model_id}/{WEIGHTS_FILE}")
    client.set_tag(run_id, "ssnas.model_id", logged.model_id)
    return LoggedModelInfo(logged.model_id, f"models:/{logged.model_id}", sha)


@contextlib.contextmanager
def _global_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's global tracking URI at ``uri`` for a block, then restore it and ``MLFLOW_TRACKING_URI``.

    MLflow's SQL registry resolves a ``models:/<id>`` source with a fresh ``MlflowClient()`` on the global URI
    (``SqlAlchemyStore.create_model_version``), not the client's; ``mlflow.set_tracking_uri(None)`` would also
    unset the environment variable, so both are put back by hand.
    """
    import mlflow
    from mlflow.tracking._tracking_service import utils

    old_uri, old_env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(old_uri)
        if old_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old_env


def register_model(tracking_uri: str, name: str, run_id: str, metric: str, value: float,
                   higher_is_better: bool = True, timeout_s: float = 300, description: str = "",
                   tags: dict[str, str] | None = None, model_description: str = "",
                   model_id: str | None = None, model_tags: dict[str, str] | None = None) -> tuple[str, bool]:
    """Register LoggedModel ``model_id`` (``models:/<id>``; without one, the run's ``model`` artifact of
    models logged before MLflow 3 LoggedModels) as a new version of ``name``; move ``champion`` on improvement.

    ``description`` and ``tags`` go on the version, ``model_description`` and ``model_tags`` on the registered
    model (set again on every registration, so they stay current).

    Returns:
        ``(version, became_champion)``.
    """
    from mlflow.exceptions import MlflowException

    client = client_for(tracking_uri)
    with store_errors(f"registration of {name}", tracking_uri):
        try:
            client.create_registered_model(name, tags=model_tags or None, description=model_description or None)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            for tag, text in (model_tags or {}).items():
                client.set_registered_model_tag(name, tag, text)
        source = f"models:/{model_id}" if model_id else f"runs:/{run_id}/model"
        with _global_tracking_uri(tracking_uri):
            version = client.create_model_version(name, source, run_id=run_id,
                                                  tags={**(tags or {}), "ssnas.val_metric": metric,
                                                        "ssnas.val_value": repr(value)},
                                                  description=description or None, model_id=model_id)
        deadline = time.time() + timeout_s
        while version.status == "PENDING_REGISTRATION" and time.time() < deadline:
            time.sleep(0.5)
            version = client.get_model_version(name, version.version)
        if version.status != "READY":
            raise TrackingError(f"model version {name}/{version.version} is {version.status}, not READY")
        try:
            current = client.get_model_version_by_alias(name, CHAMPION)
            best = float(current.tags.get("ssnas.val_value", "nan"))
        except MlflowException:
            current, best = None, float("nan")
        better = current is None or not np.isfinite(best) or (value > best if higher_is_better else value < best)
        if better:
            client.set_registered_model_alias(name, CHAMPION, version.version)
    return str(version.version), better


def download_model(tracking_uri: str, spec: str, out: Path) -> tuple[Path, dict[str, str]]:
    """Download ``NAME``, ``NAME@ALIAS`` or ``NAME/VERSION`` into ``out``; returns the model dir and version info.

    Raises:
        TrackingError: unknown model, alias or version.
    """
    from mlflow.exceptions import MlflowException

    client = client_for(tracking_uri)
    name, _, rest = spec.replace("/", "@", 1).partition("@")
    try:
        if not rest:
            versions = client.search_model_versions(f"name='{name}'")
            if not versions:
                raise TrackingError(f"registered model {name!r} has no versions at {redact(tracking_uri)}; "
                                    "check the name (ssnas-<dataset>) and --tracking-uri")
            mv = max(versions, key=lambda v: int(v.version))
        elif rest.isdigit():
            mv = client.get_model_version(name, rest)
        else:
            mv = client.get_model_version_by_alias(name, rest)
    except MlflowException as exc:
        raise TrackingError(f"model {spec!r} not found at {redact(tracking_uri)}: {str(exc).splitlines()[0]}; "
                            "use NAME, NAME@ALIAS or NAME/VERSION") from exc
    out.mkdir(parents=True, exist_ok=True)
    with store_errors(f"download of {spec}", tracking_uri):
        model_id = getattr(mv, "model_id", None) or (mv.source[len("models:/"):]
                                                      if str(mv.source).startswith("models:/m-") else None)
        if model_id:  # a LoggedModel: its own artifact location
            import mlflow.artifacts

            location = client.get_logged_model(model_id).artifact_location
            with tempfile.TemporaryDirectory(dir=out) as tmp:  # lands as <tmp>/artifacts: move it to out/model
                got = mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=tmp,
                                                          tracking_uri=tracking_uri)
                path = out / "model"
                if path.exists():
                    shutil.rmtree(path)
                os.replace(got, path)
        else:  # registered from runs:/<id>/model before LoggedModels
            path = Path(client.download_artifacts(mv.run_id, "model", str(out)))
    return path, {"name": name, "version": str(mv.version), "run_id": str(mv.run_id),
                  "aliases": ",".join(getattr(mv, "aliases", []) or [])}
