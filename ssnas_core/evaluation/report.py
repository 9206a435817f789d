"""The method-vs-baseline table: one row per method, best run or mean +- std over seeds.

Beside each searched method stands its search's fallback-node count (tag ``ssnas.fallback_nodes`` of the
fine-tune runs; ``?`` for runs made before it was tagged, ``-`` for baselines): a row whose count is
not 0 rests on a search that did not converge.

Input runs are plain dicts (``run_id``, ``tags``, ``params``, ``metrics``) so the
table logic has no tracking dependency and is tested on its own.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

COLUMNS = (("params_m", "Params (M)"), ("test/acc", "ACC"), ("test/auc", "AUC"), ("test/error", "Error"),
           ("test/balanced_acc", "Bal. ACC"), ("test/macro_f1", "Macro-F1"))


def method_label(run: dict[str, Any]) -> str:
    """``fairdarts-bt + focal-la`` for fine-tunes, ``resnet18-ce`` for baselines, with the imbalance factor."""
    tags = run["tags"]
    name = tags.get("ssnas.method", "?")
    if tags.get("ssnas.stage") == "finetune":
        name = f"{name} + {tags.get('ssnas.loss', run['params'].get('finetune.loss', '?'))}"
    rho = tags.get("ssnas.imbalance_factor", "1.0")
    return name if float(rho) == 1.0 else f"{name} (rho={float(rho):g})"


def _values(run: dict[str, Any]) -> dict[str, float]:
    m = dict(run["metrics"])
    n = m.get("n_params", float(run["tags"].get("ssnas.n_params", "nan")))
    m["params_m"] = n / 1e6
    return m


def summarize(runs: Sequence[dict[str, Any]], mode: str = "mean", select: str = "val/balanced_acc"
              ) -> list[dict[str, Any]]:
    """Rows ``{"method", "n_runs", "<metric>": (value, std or None), ...}`` sorted by method.

    Args:
        runs: finished fine-tune and baseline runs.
        mode: ``mean`` (mean +- std over runs, e.g. seeds) or ``best`` (the run with the best ``select``).
        select: the val metric that picks the best run.
    """
    groups: dict[str, list[dict[str, float]]] = defaultdict(list)
    fallback: dict[str, set[str]] = defaultdict(set)
    for run in runs:
        groups[method_label(run)].append(_values(run))
        fallback[method_label(run)].add(run["tags"].get("ssnas.fallback_nodes", "?")
                                        if run["tags"].get("ssnas.stage") == "finetune" else "-")
    rows = []
    for method, values in sorted(groups.items()):
        keys = sorted({k for v in values for k in v if k.startswith(("test/", "params_m"))})
        row: dict[str, Any] = {"method": method, "n_runs": len(values),
                               "fallback_nodes": "/".join(sorted(fallback[method]))}
        if mode == "best":
            best = max(values, key=lambda v: v.get(select, -math.inf))
            row.update({k: (best.get(k, math.nan), None) for k in keys})
        else:
            for k in keys:
                xs = [v[k] for v in values if k in v and math.isfinite(v[k])]
                mean = sum(xs) / len(xs) if xs else math.nan
                std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
                row[k] = (mean, std)
        rows.append(row)
    return rows


def class_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    return sorted({k for r in rows for k in r if k.startswith("test/error/")})


def _fmt(cell: Any, digits: int = 3) -> str:
    if not isinstance(cell, tuple):
        return str(cell)
    mean, std = cell
    if mean is None or not math.isfinite(mean):
        return "-"
    return f"{mean:.{digits}f}" + (f" +- {std:.{digits}f}" if std is not None else "")


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    per_class = class_columns(rows)
    head = ["Method", "Runs", "Fallback nodes", *[label for _, label in COLUMNS],
            *[f"Error {c.split('/')[-1]}" for c in per_class]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["method"], str(r["n_runs"]), r.get("fallback_nodes", "-"),
                 *[_fmt(r.get(k, (math.nan, None)), 2 if k == "params_m" else 3) for k, _ in COLUMNS],
                 *[_fmt(r.get(c, (math.nan, None))) for c in per_class]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    per_class = class_columns(rows)
    keys = [k for k, _ in COLUMNS] + per_class
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "n_runs", "fallback_nodes", *[x for k in keys for x in (k, f"{k}_std")]])
        for r in rows:
            cells = []
            for k in keys:
                mean, std = r.get(k, (math.nan, None))
                cells += [mean, "" if std is None else std]
            w.writerow([r["method"], r["n_runs"], r.get("fallback_nodes", "-"), *cells])
    return path
