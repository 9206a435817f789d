"""Reading finished runs of an experiment as plain dicts (for ``ssnas report``)."""

from __future__ import annotations

from typing import Any

from ssnas_core.errors import TrackingError
from ssnas_core.tracking.mlflow_store import check_reachable, client_for, redact, store_errors


def experiment_runs(tracking_uri: str, experiment: str, stages: tuple[str, ...]) -> list[dict[str, Any]]:
    """FINISHED runs of ``experiment`` whose ``ssnas.stage`` is one of ``stages``.

    Raises:
        TrackingError: no such experiment (the message lists the known ones).
    """
    check_reachable(tracking_uri)
    client = client_for(tracking_uri)
    with store_errors("experiment lookup", tracking_uri):
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            known = ", ".join(sorted(e.name for e in client.search_experiments())) or "none"
            raise TrackingError(f"no MLflow experiment named {experiment!r} at {redact(tracking_uri)}; known: {known}")
        runs = client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'", max_results=5000)
    return [{"run_id": r.info.run_id, "tags": dict(r.data.tags), "params": dict(r.data.params),
             "metrics": dict(r.data.metrics)} for r in runs if r.data.tags.get("ssnas.stage") in stages]
