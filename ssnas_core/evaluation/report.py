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


def method_label(run: dict[str, Any], always_rho: bool = False) -> str:
    """``fairdarts-bt + focal-la`` for fine-tunes, ``resnet18-ce`` for baselines, with the imbalance factor;
    ``+ post-hoc tau`` when the run's test figures are post-hoc adjusted (its plain ones are ``test_raw/*``).

    The factor is left out when it is 1 (the data as released), unless ``always_rho`` (runs of several factors
    side by side, where a bare name would read as "any factor")."""
    tags = run["tags"]
    name = tags.get("ssnas.method", "?")
    if tags.get("ssnas.stage") == "finetune":
        name = f"{name} + {tags.get('ssnas.loss', run['params'].get('finetune.loss', '?'))}"
    if run["params"].get("finetune.tau_posthoc", "none") != "none":
        name += " + post-hoc tau"
    rho = tags.get("ssnas.imbalance_factor", "1.0")
    return name if float(rho) == 1.0 and not always_rho else f"{name} (rho={float(rho):g})"


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
    several = len({float(run["tags"].get("ssnas.imbalance_factor", "1.0")) for run in runs}) > 1
    for run in runs:
        label = method_label(run, always_rho=several)
        groups[label].append(_values(run))
        fallback[label].add(run["tags"].get("ssnas.fallback_nodes", "?")
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


# --- like for like: architectures (rows) under the same fine-tune losses (columns) -----------------------------

ARCHITECTURES = {"fairdarts-bt": "ours (FairDARTS + Barlow Twins)", "darts-simclr": "SSNAS (DARTS + SimCLR)",
                 "darts-ce": "DARTS (supervised)", "fairdarts-ce": "FairDARTS (supervised)",
                 "resnet18": "ResNet-18", "resnet32": "ResNet-32", "resnet50": "ResNet-50",
                 "genotype": "genotype file"}
LOSS_ORDER = ("ce", "ce-la", "focal-la", "focal-la + post-hoc tau")
POSTHOC = " + post-hoc tau"
GRID_METRICS = (("test/balanced_acc", "Balanced accuracy"), ("test/acc", "ACC"), ("test/auc", "AUC"))


def _architecture(run: dict[str, Any]) -> str:
    tags = run["tags"]
    method, loss = tags.get("ssnas.method", "?"), tags.get("ssnas.loss", run["params"].get("finetune.loss", "?"))
    return method.removesuffix(f"-{loss}") if tags.get("ssnas.stage") == "baseline" else method


def _cells_of(run: dict[str, Any]) -> list[tuple[str, dict[str, float]]]:
    """``(loss column, test metrics)`` a run contributes: a post-hoc run gives its loss's column too (test_raw/*)."""
    loss = run["tags"].get("ssnas.loss", run["params"].get("finetune.loss", "?"))
    metrics = run["metrics"]
    if run["params"].get("finetune.tau_posthoc", "none") == "none" or "finetune/tau_posthoc" not in metrics:
        return [(loss, metrics)]
    raw = {f"test/{k.split('/', 1)[1]}": v for k, v in metrics.items() if k.startswith("test_raw/")}
    return [(loss + POSTHOC, metrics), (loss, raw)]


def like_for_like(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The architecture x loss grid, per imbalance factor, each cell mean +- std over seeds.

    Returns ``{"rhos": {rho: {"rows": [arch...], "columns": [loss...], "cells": {(arch, loss): {metric: (mean,
    std, n)}}, "best_epochs": {(arch, loss): ([best val epoch, 1-based, per seed], [fine-tune epochs])},
    "bf16": {(arch, loss): seeds fine-tuned under bf16 autocast (``finetune.amp``)},
    "fallback": {arch: str}, "params_m": {arch: float}}}}``. One value per (architecture, loss, seed): a second
    run of the same seed is left out.
    """
    seen: set[tuple[str, str, str, str]] = set()
    values: dict[str, dict[tuple[str, str], list[dict[str, float]]]] = defaultdict(lambda: defaultdict(list))
    fallback: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    search: dict[str, dict[str, set[tuple[str, str]]]] = defaultdict(lambda: defaultdict(set))
    params: dict[str, dict[str, float]] = defaultdict(dict)
    length: dict[str, dict[tuple[str, str], tuple[list[int], set[int]]]] = defaultdict(dict)
    bf16: dict[str, dict[tuple[str, str], int]] = defaultdict(dict)  # seeds fine-tuned under bf16 autocast
    for run in runs:
        rho = f"{float(run['tags'].get('ssnas.imbalance_factor', '1.0')):g}"
        arch = _architecture(run)
        searched = run["tags"].get("ssnas.stage") == "finetune"
        fallback[rho][arch].add(run["tags"].get("ssnas.fallback_nodes", "?") if searched else "-")
        tags = run["tags"]
        search[rho][arch].add((tags.get("ssnas.decided_fraction", "?"), tags.get("ssnas.search_epochs", "?"))
                              if searched else ("-", "-"))
        params[rho][arch] = _values(run)["params_m"]
        for column, metrics in _cells_of(run):
            key = (rho, arch, column, run["params"].get("seed", run["run_id"]))
            if key in seen:
                continue
            seen.add(key)
            values[rho][(arch, column)].append(metrics)
            low = run["params"].get("finetune.amp", "none") == "bf16"
            bf16[rho][(arch, column)] = bf16[rho].get((arch, column), 0) + low
            best, epochs = run["metrics"].get("best_epoch"), run["params"].get("finetune.epochs")
            if best is not None and epochs:
                got = length[rho].setdefault((arch, column), ([], set()))
                got[0].append(int(best) + 1)  # logged 0-based
                got[1].add(int(epochs))
    out: dict[str, Any] = {"rhos": {}}
    for rho in sorted(values, key=float, reverse=True):
        grid = values[rho]
        archs = {a for a, _ in grid}
        rows = [a for a in ARCHITECTURES if a in archs] + sorted(archs - set(ARCHITECTURES))
        losses = {c for _, c in grid}
        columns = [c for c in LOSS_ORDER if c in losses] + sorted(losses - set(LOSS_ORDER))
        cells = {}
        for key, ms in grid.items():
            cell = {}
            for metric, _ in GRID_METRICS:
                xs = [m[metric] for m in ms if metric in m and math.isfinite(m[metric])]
                mean = sum(xs) / len(xs) if xs else math.nan
                std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
                cell[metric] = (mean, std, len(xs))
            cells[key] = cell
        best_epochs = {k: (sorted(b), sorted(e)) for k, (b, e) in length[rho].items()}
        out["rhos"][rho] = {"rows": rows, "columns": columns, "cells": cells, "best_epochs": best_epochs,
                            "bf16": bf16[rho], "params_m": params[rho],
                            "fallback": {a: "/".join(sorted(fallback[rho][a])) for a in rows},
                            "decided": {a: "; ".join(sorted(d for d, _ in search[rho][a])) for a in rows},
                            "search_epochs": {a: "/".join(sorted(e for _, e in search[rho][a])) for a in rows}}
    return out


def like_for_like_markdown(runs: Sequence[dict[str, Any]]) -> str:
    """Markdown: per imbalance factor and metric, architectures x losses, ``mean +- std (n seeds)``; a cell whose
    fine-tunes ran under bf16 autocast says so (``(3, bf16)``, or ``(3, 1 bf16)`` for one of three)."""
    grid = like_for_like(runs)
    parts = []
    for rho, g in grid["rhos"].items():
        for metric, label in GRID_METRICS:
            head = ["Architecture", "Params (M)", "Fallback nodes", "Decided (normal/reduce)", "Search epochs",
                    *g["columns"]]
            lines = [f"### {label}, imbalance factor {rho}", "", "| " + " | ".join(head) + " |",
                     "|" + "---|" * len(head)]
            for arch in g["rows"]:
                cells = []
                for column in g["columns"]:
                    mean, std, n = g["cells"].get((arch, column), {}).get(metric, (math.nan, None, 0))
                    low = g["bf16"].get((arch, column), 0)
                    note = "" if not low else ", bf16" if low == n else f", {low} bf16"
                    cells.append("-" if not n else _fmt((mean, std)) + f" ({n}{note})")
                lines.append(f"| {ARCHITECTURES.get(arch, arch)} | {g['params_m'].get(arch, math.nan):.2f} | "
                             f"{g['fallback'][arch]} | {g['decided'][arch]} | {g['search_epochs'][arch]} | "
                             + " | ".join(cells) + " |")
            parts.append("\n".join(lines) + "\n")
        parts.append(_length_markdown(rho, g))
    return "\n".join(parts)


def _length_markdown(rho: str, g: dict[str, Any]) -> str:
    """Each cell's best val epochs (one per seed) against the fine-tune's length: has val stopped rising?"""
    lines = [f"### Best val epoch of each seed, imbalance factor {rho}", "",
             "Best epochs at the end of the schedule mean val was still rising when it ended: a longer fine-tune "
             "may do better.", "", "| Architecture | " + " | ".join(g["columns"]) + " |",
             "|" + "---|" * (len(g["columns"]) + 1)]
    for arch in g["rows"]:
        cells = []
        for column in g["columns"]:
            best, epochs = g["best_epochs"].get((arch, column), ([], []))
            cells.append(f"{', '.join(map(str, best))} of {'/'.join(map(str, epochs))}" if best else "-")
        lines.append(f"| {ARCHITECTURES.get(arch, arch)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def like_for_like_csv(runs: Sequence[dict[str, Any]], path: Path) -> Path:
    """One row per (imbalance factor, architecture, loss): n and mean/std of each grid metric."""
    grid = like_for_like(runs)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["imbalance_factor", "architecture", "loss", "fallback_nodes", "decided_fraction", "search_epochs",
                    "n_seeds", "n_bf16",
                    *[x for m, _ in GRID_METRICS for x in (m, f"{m}_std")]])
        for rho, g in grid["rhos"].items():
            for (arch, column), cell in sorted(g["cells"].items()):
                n = max(v[2] for v in cell.values())
                w.writerow([rho, arch, column, g["fallback"][arch], g["decided"][arch], g["search_epochs"][arch], n,
                            g["bf16"].get((arch, column), 0),
                            *[x for m, _ in GRID_METRICS for x in (cell[m][0], "" if cell[m][1] is None
                                                                   else cell[m][1])]])
    return path
