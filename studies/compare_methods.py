"""compare_methods: every method x seed on the same data, for `ssnas report`.

Methods: ``ours`` (FairDARTS + Barlow Twins search, focal + logit-adjusted
fine-tune), ``ssnas`` (DARTS + SimCLR search, CE fine-tune), ``darts``
(supervised DARTS search), ``fairdarts`` (supervised FairDARTS search),
``resnet18-ce`` and ``resnet18-focal-la``. A grid sampler runs each (method,
seed) once; no pruning. Each trial's MLflow run is tagged as a fine-tune or
baseline run, so `ssnas report --experiment ssnas-study-<study>` tabulates the
study. Default budget: the whole grid (6 methods x --seeds, 3 by default).
"""

from __future__ import annotations

from typing import Any

import optuna

from studies.common import baseline_into, finetune_into, search_locally

DESCRIPTION = "method x seed grid for the comparison report"
DEFAULT_TRIALS = 18
DIRECTION = "maximize"
NO_PRUNING = True  # every (method, seed) runs to the end: the report compares finished runs

# method: (search relaxation, search loss, method tag, fine-tune loss) or (baseline model, loss)
SEARCHED = {
    "ours": ("sigmoid", "barlow-twins", "fairdarts-bt", "focal-la"),
    "ssnas": ("softmax", "simclr", "darts-simclr", "ce"),
    "darts": ("softmax", "ce", "darts-ce", "ce"),
    "fairdarts": ("sigmoid", "ce", "fairdarts-ce", "focal-la"),
}
BASELINES = {"resnet18-ce": ("resnet18", "ce"), "resnet18-focal-la": ("resnet18", "focal-la")}
METHODS = (*SEARCHED, *BASELINES)


def sampler(ctx: Any, seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GridSampler({"method": list(METHODS), "seed": list(range(ctx.seeds))}, seed=seed)


def suggest(trial: optuna.Trial, ctx: Any) -> dict[str, Any]:
    method = trial.suggest_categorical("method", list(METHODS))
    return {"seed": trial.suggest_int("seed", 0, max(ctx.seeds - 1, 0)), "_method": method}


def run_trial(overrides: dict[str, Any], ctx: Any, run: Any) -> float:
    method = overrides.pop("_method")
    rho = str(float(overrides.get("data.imbalance_factor", 1.0)))
    if method in BASELINES:
        model, loss = BASELINES[method]
        return baseline_into({**overrides, "finetune.loss": loss}, run, model,
                             {"ssnas.stage": "baseline", "ssnas.method": f"{model}-{loss}", "ssnas.loss": loss,
                              "ssnas.imbalance_factor": rho})
    relaxation, ssl, tag, loss = SEARCHED[method]
    artifacts = search_locally({**overrides, "search.relaxation": relaxation, "search.ssl": ssl}, ctx)
    return finetune_into({**overrides, "finetune.loss": loss}, run, artifacts / "genotype.json",
                         artifacts / "supernet.pt", overrides.get("search.width"), overrides.get("search.cells"),
                         {"ssnas.stage": "finetune", "ssnas.method": tag, "ssnas.loss": loss,
                          "ssnas.imbalance_factor": rho})
