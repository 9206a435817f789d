"""tune_finetune: tune the focal loss gamma, the logit-adjustment tau and the learning rate of a fine-tune.

Objective: the val metric of the fine-tuned model (balanced accuracy; AUC for
multi-label datasets), maximised, reported every epoch so the pruner can stop
weak trials. The architecture comes from ``--search-run`` (or ``--genotype``).
Default budget: 20 trials of the fine-tune's ``--epochs``. Trial 0 of a new study is
the untuned setting (the configured gamma, tau and learning rate: the paper's 2, 1
and 0.025 unless given), so the study shows what tuning gained.
"""

from __future__ import annotations

from typing import Any

import optuna

from studies.common import check_finetune, finetune_into

DESCRIPTION = "focal gamma, logit-adjustment tau and learning rate of the fine-tune"
DEFAULT_TRIALS = 20
DIRECTION = "maximize"
preflight = check_finetune  # the architecture, data and device, checked before the study is created


def suggest(trial: optuna.Trial, ctx: Any) -> dict[str, Any]:
    return {
        "finetune.gamma": trial.suggest_float("gamma", 0.0, 5.0),
        "finetune.tau": trial.suggest_float("tau", 0.0, 2.0),
        "finetune.lr": trial.suggest_float("lr", 1e-3, 0.1, log=True),
    }


def reference(ctx: Any) -> dict[str, Any]:
    """The parameters a fine-tune without the study would use: enqueued as the study's first trial."""
    from ssnas_core.config import RunConfig, with_overrides

    cfg = with_overrides(RunConfig(), {k: v for k, v in ctx.fixed.items() if k.startswith("finetune.")})
    return {"gamma": cfg.finetune.gamma, "tau": cfg.finetune.tau, "lr": cfg.finetune.lr}


def run_trial(overrides: dict[str, Any], ctx: Any, run: Any) -> float:
    """Fine-tune with ``overrides`` into the trial's MLflow run; returns the best val metric."""
    return finetune_into(overrides, run, ctx.genotype, ctx.weights, ctx.width, ctx.cells,
                         tags={"ssnas.search_run_id": ctx.search_run or ""}, search_run=ctx.search_run)
