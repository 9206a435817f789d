"""``ssnas report --experiment NAME``: method-vs-baseline table (Markdown, CSV) and plots, logged as a report run."""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ssnas_core.errors import SsnasError, read_text
from ssnas_core.evaluation.report import (
    class_columns,
    like_for_like_csv,
    like_for_like_markdown,
    summarize,
    to_csv,
    to_markdown,
)


def merge_runs_file(path: Path, experiment: str, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Append ``runs`` not yet in the JSON-lines file ``path`` (by run id); returns all of the file's runs.

    The file outlives the MLflow store it was filled from: results made over several working periods,
    each with its own store, add up in one file kept with the results.

    Raises:
        SsnasError: a line of the file is not a run record.
    """
    known: list[dict[str, Any]] = []
    if path.exists():
        for n, line in enumerate(read_text(path, "--runs-file").splitlines(), 1):
            try:
                record = json.loads(line) if line.strip() else None
            except ValueError:
                record = {}
            if record is None:
                continue
            if not isinstance(record, dict) or not {"run_id", "tags", "params", "metrics"} <= set(record):
                raise SsnasError(f"{path}:{n} is not a run record (run_id, tags, params, metrics): fix or remove "
                                 "that line")
            known.append(record)
    ids = {r["run_id"] for r in known}
    new = [{"experiment": experiment, **r} for r in runs if r["run_id"] not in ids]
    if new:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in known + new))
        os.replace(tmp, path)
    return known + new


def run_report(experiment: str, uri: str, out: str, mode: str, runs_file: str = "") -> str:
    """Write the report into ``out`` and log it as a ``report`` run; returns the folder.

    With ``runs_file``, the experiment's finished runs are first added to that JSON-lines file, and the
    report covers every run in it (an experiment missing from the store then reports the file alone).
    """
    from ssnas_core import viz
    from ssnas_core.errors import TrackingError
    from ssnas_core.tracking.mlflow_adapter import MlflowTracker, download_artifact
    from ssnas_core.tracking.mlflow_query import experiment_runs
    from ssnas_core.tracking.mlflow_store import default_tracking_uri

    uri = uri or default_tracking_uri()
    def store_runs(stages: tuple[str, ...]) -> list[dict[str, Any]]:
        try:
            return experiment_runs(uri, experiment, stages)
        except TrackingError:
            if not runs_file:  # with a runs file, an experiment this store lacks reports the file alone
                raise
            return []

    runs = store_runs(("finetune", "baseline"))
    if runs_file:
        runs = [r for r in merge_runs_file(Path(runs_file), experiment, runs)
                if r["tags"].get("ssnas.stage") in ("finetune", "baseline")]
    if not runs:
        raise SsnasError(f"experiment {experiment!r} has no finished finetune or baseline runs to report: "
                         "run `ssnas finetune` or `ssnas baseline` first")
    folder = Path(out or f"report-{experiment}")
    folder.mkdir(parents=True, exist_ok=True)
    rows = summarize(runs, mode)
    legend = ("mean +- sample std over runs (seeds)" if mode == "mean" else "the run with the best val metric")
    (folder / "report.md").write_text(
        f"# {experiment}\n\n## Like for like\n\nRows are architectures, columns the fine-tune losses they were "
        "trained with; each cell is the test mean +- sample std over seeds (number of seeds). A post-hoc run "
        "gives both its own column (`+ post-hoc tau`, tau fitted on val) and its loss's column (the same "
        "network without the adjustment). Fallback nodes: nodes of the searched cell that took the fallback "
        "gene (not 0: that search did not converge, and its rows are not a searched architecture's result; "
        "`?`: not recorded; `-`: not searched).\n\n"
        f"{like_for_like_markdown(runs)}\n## Per method\n\nOne row per method; {legend}. Test split; error = "
        "1 - ACC; per-class error = 1 - recall.\n\n"
        f"{to_markdown(rows)}")
    files = [folder / "report.md", to_csv(rows, folder / "report.csv"),
             like_for_like_csv(runs, folder / "like_for_like.csv")]
    per_class = class_columns(rows)
    if per_class:
        errors = np.array([[r.get(c, (math.nan, None))[0] for c in per_class] for r in rows], dtype=float)
        files.append(viz.plot_per_class_error([r["method"] for r in rows], [c.split("/")[-1] for c in per_class],
                                              errors, f"{experiment}: per-class test error",
                                              folder / "per_class_error.png"))
    for search in store_runs(("search",)):
        with tempfile.TemporaryDirectory() as tmp:  # the report folder keeps only the report
            local = download_artifact(uri, search["run_id"], "alphas/trajectory.csv", tmp)
            if local is None:
                continue
            with open(local) as fh:
                rows_csv = [(int(r["epoch"]), r["cell"], r["edge"], r["op"], float(r["weight"]))
                            for r in csv.DictReader(fh)]
        files.append(viz.plot_alpha_trajectory(rows_csv, folder / f"alphas_{search['tags'].get('ssnas.method')}_"
                                                                  f"{search['run_id'][:8]}.png"))
    tracker = MlflowTracker.start(uri, experiment, "report", {"ssnas.stage": "report", "ssnas.mode": mode})
    status = "FAILED"
    try:
        for path in files:
            tracker.log_artifact(path, "report")
        status = "FINISHED"
    finally:
        tracker.end(status)
    print(like_for_like_markdown(runs), file=sys.stderr)
    return str(folder)
