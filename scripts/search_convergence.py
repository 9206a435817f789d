"""Print a search run's convergence per epoch as a Markdown table, and its final genotype.

Reads ``search/decided/<cell>``, ``search/fallback_nodes/<cell>``, ``search/grad_share_01`` and
``search/epoch_seconds`` from MLflow, e.g.

    .venv/bin/python scripts/search_convergence.py RUN_ID --tracking-uri sqlite:///mlflow.db
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

from mlflow import MlflowClient

KEYS = ("search/decided/normal", "search/decided/reduce", "search/fallback_nodes/normal",
        "search/fallback_nodes/reduce", "search/grad_share_01", "search/epoch_seconds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_id")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    args = parser.parse_args()
    client = MlflowClient(args.tracking_uri)
    history = {k: {m.step: m.value for m in client.get_metric_history(args.run_id, k)} for k in KEYS}
    epochs = sorted(history[KEYS[0]])
    print("| epoch | decided normal | decided reduce | fallback normal | fallback reduce | zero-one share | "
          "minutes (cumulative) |")
    print("|---|---|---|---|---|---|---|")
    total = 0.0
    for e in epochs:
        row = [history[k].get(e, float("nan")) for k in KEYS]
        total += row[5]
        print(f"| {e + 1} | {row[0]:.3f} | {row[1]:.3f} | {int(row[2])} | {int(row[3])} | {row[4]:.3f} | "
              f"{total / 60:.1f} |")
    run = client.get_run(args.run_id)
    print(f"\nstatus {run.info.status}, ssnas.fallback_nodes = {run.data.tags.get('ssnas.fallback_nodes', '-')}")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(args.run_id, "genotype.json", tmp)
        except Exception:  # not finished: the last epoch's snapshot
            snaps = [f.path for f in client.list_artifacts(args.run_id, "genotypes") if f.path.endswith(".json")]
            path = client.download_artifacts(args.run_id, sorted(snaps)[-1], tmp) if snaps else ""
        if path:
            print(f"genotype ({os.path.basename(path)}): {json.dumps(json.loads(open(path).read()))}")


if __name__ == "__main__":
    main()
