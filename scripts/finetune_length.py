"""Is 30 epochs long enough? Paired fine-tunes of one architecture, loss and seed at two lengths.

Reads the finished fine-tunes of an MLflow experiment (made with ``ssnas finetune ... --epochs N`` for two or
more N, same seeds), and writes:

* ``<out>/<stem>.json``: per run its seed, epochs, best val epoch (1-based), best val metric, test figures and
  the val curve;
* ``<out>/<stem>.png``: val balanced accuracy per epoch, one line per run.

``--stem`` (default ``finetune_length``) keeps pairs run in different working periods apart: each period's
MLflow store is new, so a later pair goes to its own files rather than overwriting an earlier one.

    .venv/bin/python scripts/finetune_length.py --tracking-uri sqlite:////tmp/ssnas-results/mlflow.db \\
        --experiment results-long --out docs/results/pneumonia
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tracking-uri", required=True)
    p.add_argument("--experiment", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--metric", default="val/balanced_acc")
    p.add_argument("--stem", default="finetune_length", help="output file names, without extension")
    a = p.parse_args()

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from mlflow import MlflowClient

    client = MlflowClient(a.tracking_uri)
    exp = client.get_experiment_by_name(a.experiment)
    if exp is None:
        raise SystemExit(f"finetune_length: no experiment {a.experiment!r} at {a.tracking_uri}")
    runs = client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED' and tags.`ssnas.stage` = 'finetune'",
                              max_results=1000)
    rows: list[dict[str, object]] = []
    curves: dict[tuple[int, int], list[tuple[int, float]]] = {}
    for run in sorted(runs, key=lambda r: (int(r.data.params["seed"]), int(r.data.params["finetune.epochs"]))):
        epochs, seed = int(run.data.params["finetune.epochs"]), int(run.data.params["seed"])
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, a.metric)
                         if m.step < epochs)
        m = run.data.metrics
        rows.append({"run_id": run.info.run_id, "method": run.data.tags.get("ssnas.method"),
                     "loss": run.data.params.get("finetune.loss"), "seed": seed, "epochs": epochs,
                     "best_epoch": int(m["best_epoch"]) + 1, "best_val": max(v for _, v in history),
                     **{k: m[k] for k in ("test/balanced_acc", "test/acc", "test/auc") if k in m},
                     "val_curve": [round(v, 5) for _, v in history]})
        curves[(seed, epochs)] = history
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{a.stem}.json").write_text(json.dumps(rows, indent=1) + "\n")
    fig = Figure(figsize=(8, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    longest = max((e for _, e in curves), default=0)
    for (seed, epochs), history in curves.items():  # a seed's runs share a colour; the longest is solid
        ax.plot([s + 1 for s, _ in history], [v for _, v in history], label=f"seed {seed}, {epochs} epochs",
                color=f"C{seed % 10}", linestyle="-" if epochs == longest else "--")
    ax.set_xlabel("fine-tune epoch (cosine schedule over the run's length)")
    ax.set_ylabel(a.metric)
    ax.set_title(f"{a.experiment}: {rows[0]['method'] if rows else ''}, {rows[0]['loss'] if rows else ''}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / f"{a.stem}.png", dpi=110)
    for r in rows:
        print(json.dumps({k: v for k, v in r.items() if k != "val_curve"}))


if __name__ == "__main__":
    main()
