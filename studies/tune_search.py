"""tune_search: tune the Barlow Twins lambda and the FairDARTS zero-one loss weight of the search.

Each trial searches (tracking off; its checkpoints and genotype stay in the
work dir) and then fine-tunes the derived network briefly into the trial's
MLflow run. Objective: the fine-tune's val metric (balanced accuracy; AUC for
multi-label), reported every fine-tune epoch for pruning. Default budget: 12
trials; set the per-trial cost with --search.epochs, --search.limit-train
(as --limit-train) and --epochs.
"""

from __future__ import annotations

from typing import Any

import optuna

from studies.common import finetune_into, search_locally

DESCRIPTION = "Barlow Twins lambda and zero-one loss weight of the search"
DEFAULT_TRIALS = 12
DIRECTION = "maximize"


def suggest(trial: optuna.Trial, ctx: Any) -> dict[str, Any]:
    return {
        "search.lambda_bt": trial.suggest_float("lambda_bt", 1e-4, 1e-1, log=True),
        "search.w01": trial.suggest_float("w01", 0.0, 20.0),
    }


def run_trial(overrides: dict[str, Any], ctx: Any, run: Any) -> float:
    artifacts = search_locally(overrides, ctx)
    run.tracker.log_params({k: v for k, v in overrides.items() if k.startswith("search.")})
    return finetune_into(overrides, run, artifacts / "genotype.json", artifacts / "supernet.pt",
                         overrides.get("search.width"), overrides.get("search.cells"),
                         {"ssnas.method": "fairdarts-bt"})
