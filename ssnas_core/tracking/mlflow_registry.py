"""Logging models with ``mlflow.pytorch`` and the model registry (champion alias), without the fluent API.

Order (RELIABILITY.md section 2): save locally, upload, verify the upload
(listing + sha256 tag), register, wait for READY, then move the ``champion``
alias only if the new version beats the current champion on the val metric.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ssnas_core.checkpoint import sha256_file
from ssnas_core.errors import TrackingError
from ssnas_core.tracking.mlflow_store import client_for, redact, store_errors

CHAMPION = "champion"


def log_pytorch_model(tracking_uri: str, run_id: str, model: Any, input_example: np.ndarray,
                      extra_files: list[Path]) -> str:
    """Save ``model`` with signature and input example, upload it as the run's ``model`` artifact, verify it.

    Returns:
        The sha256 of the uploaded weights file (also set as tag ``ssnas.model_sha256``).
    """
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    model = model.cpu().eval()
    with torch.no_grad():
        output = model(torch.from_numpy(input_example)).numpy()
    signature = infer_signature(input_example, output)
    client = client_for(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp, store_errors("model logging", tracking_uri):
        local = Path(tmp) / "model"
        # Explicit requirements: MLflow's inference imports the model in a subprocess (seconds per model).
        requirements = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}", "numpy"]
        mlflow.pytorch.save_model(model, str(local), signature=signature, input_example=input_example,
                                  extra_files=[str(p) for p in extra_files], pip_requirements=requirements)
        weights = next(local.rglob("model.pth"), None) or max(local.rglob("*"), key=lambda p: p.stat().st_size)
        sha = sha256_file(weights)
        hashed = f"model/{weights.relative_to(local).as_posix()}"
        client.log_artifacts(run_id, str(local), "model")
        listed = {f.path for f in client.list_artifacts(run_id, "model")}
    if "model/MLmodel" not in listed:
        raise TrackingError(f"model upload for run {run_id} is incomplete (no model/MLmodel); not registering it")
    client.set_tag(run_id, "ssnas.model_sha256", sha)
    client.set_tag(run_id, "ssnas.model_sha256_file", hashed)  # which artifact the hash is of
    return sha


def register_model(tracking_uri: str, name: str, run_id: str, metric: str, value: float,
                   higher_is_better: bool = True, timeout_s: float = 300, description: str = "",
                   tags: dict[str, str] | None = None, model_description: str = "") -> tuple[str, bool]:
    """Register the run's ``model`` artifact as a new version of ``name``; move ``champion`` on improvement.

    ``description`` and ``tags`` go on the version, ``model_description`` on the registered model.

    Returns:
        ``(version, became_champion)``.
    """
    from mlflow.exceptions import MlflowException

    client = client_for(tracking_uri)
    with store_errors(f"registration of {name}", tracking_uri):
        try:
            client.create_registered_model(name, description=model_description or None)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id,
                                              tags={**(tags or {}), "ssnas.val_metric": metric,
                                                    "ssnas.val_value": repr(value)},
                                              description=description or None)
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
        path = Path(client.download_artifacts(mv.run_id, "model", str(out)))
    return path, {"name": name, "version": str(mv.version), "run_id": str(mv.run_id),
                  "aliases": ",".join(getattr(mv, "aliases", []) or [])}
