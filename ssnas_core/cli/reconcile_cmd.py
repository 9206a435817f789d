"""``ssnas runs reconcile``: end the MLflow runs that a dead process left RUNNING.

A run records its owner as tag ``ssnas.owner`` (``host:pid``) when it starts or resumes. A RUNNING run
whose owner is on this host and no longer alive (for a search, its work dir's lock is free; otherwise
the pid is gone) is marked KILLED, with ``ssnas.end_reason`` saying why; a search so ended can be
resumed with ``--resume``. Runs owned on another host, or started before owners were recorded, are
listed and left alone.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

from ssnas_core import lease


def _owner_alive(tags: dict[str, str]) -> bool | None:
    """True/False for an owner on this host, None when it cannot be told from here."""
    host, _, pid = tags.get("ssnas.owner", "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    work_dir = tags.get("ssnas.work_dir")
    held = lease.is_held(Path(work_dir)) if work_dir else None
    if held is not None:  # a search: its lock says whether its owner lives
        return held
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def reconcile(uri: str, experiment: str = "", dry_run: bool = False) -> list[dict[str, Any]]:
    """Mark RUNNING runs of dead owners KILLED; returns one ``{run_id, experiment, owner, action}`` per RUNNING run."""
    from ssnas_core.tracking.mlflow_store import check_reachable, client_for, redact, store_errors

    check_reachable(uri)
    client = client_for(uri)
    with store_errors("run lookup", uri):
        exps = client.search_experiments()
        ids = [e.experiment_id for e in exps if not experiment or e.name == experiment]
        names = {e.experiment_id: e.name for e in exps}
        if experiment and not ids:
            from ssnas_core.errors import TrackingError

            raise TrackingError(f"no MLflow experiment named {experiment!r} at {redact(uri)}")
        running = client.search_runs(ids, "attributes.status = 'RUNNING'", max_results=10000) if ids else []
    report = []
    for run in running:
        tags = dict(run.data.tags)
        alive = _owner_alive(tags)
        action = {True: "left: its owner is alive", None: "left: its owner cannot be checked from this host",
                  False: "KILLED: its owner is gone"}[alive]
        if alive is False and not dry_run:
            with store_errors("run update", uri):
                client.set_tag(run.info.run_id, "ssnas.end_reason",
                               f"reconciled: owner {tags['ssnas.owner']} had exited without ending the run")
                client.set_terminated(run.info.run_id, "KILLED")
        report.append({"run_id": run.info.run_id, "experiment": names.get(run.info.experiment_id, "?"),
                       "owner": tags.get("ssnas.owner", "unknown"), "action": action})
    for row in report:
        print(f"{row['run_id']}  {row['experiment']}  owner {row['owner']}: {row['action']}", file=sys.stderr)
    return report
