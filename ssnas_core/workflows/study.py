"""An Optuna study (``ssnas study run|worker NAME``, ``api.study``): the bridge to ``studies/`` (which owns optuna)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from ssnas_core.config import RunConfig, with_overrides
from ssnas_core.workflows.runs import tracking_uri


def run_study_workflow(kind: str, overrides: dict[str, Any], *, storage: str, create: bool = True,
                       study_name: str | None = None, n_trials: int | None = None, timeout: float | None = None,
                       sampler: str = "tpe", pruner: str = "median", seeds: int = 3, search_run: str | None = None,
                       genotype: str | None = None, weights: str | None = None, width: int | None = None,
                       cells: int | None = None, heartbeat: int = 10) -> str:
    """Create/resume (``create``: ``ssnas study run``) or join (``ssnas study worker``) a study of ``kind``;
    returns the study's name. The arguments are ``ssnas study``'s flags."""
    try:
        from studies.runner import StudyContext, run_study
    except ImportError as err:  # optuna missing
        from ssnas_core.errors import ConfigError

        raise ConfigError(f"studies need optuna ({err}): pip install -e '.[studies]'") from err
    from ssnas_core.data.dataset import safe_name
    from ssnas_core.errors import ConfigError

    if study_name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", study_name):
        raise ConfigError(f"--study-name {study_name!r} is invalid: use up to 100 letters, digits, '.', '_' "
                          "or '-' (it names an MLflow experiment, runs and folders)")
    if n_trials is not None and n_trials < 1:
        raise ConfigError(f"--n-trials {n_trials} is invalid: give the number of finished trials to reach (>= 1)")
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise ConfigError(f"--timeout {timeout} is invalid: give seconds > 0")
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds} is invalid: give the number of seeds per method (>= 1)")
    if heartbeat < 1:
        raise ConfigError(f"--heartbeat {heartbeat} is invalid: give seconds between worker heartbeats (>= 1)")
    cfg = with_overrides(RunConfig(), overrides)
    study = study_name or f"{kind}-{safe_name(cfg.data.dataset)}"
    ctx = StudyContext(
        study=study, kind=kind, storage_url=storage,
        fixed={k: v for k, v in overrides.items()
               if k.split(".")[0] in ("data", "finetune", "search", "seed", "device")},
        seeds=seeds,
        search_run=search_run, genotype=genotype, weights=weights, width=width,
        cells=cells, tracking_uri=tracking_uri(cfg),
        experiment=cfg.tracking.experiment or f"ssnas-study-{study}", work_dir=Path(cfg.tracking.work_dir),
    )
    run_study(ctx, create=create, n_trials=n_trials, timeout=timeout,
              sampler=sampler, pruner=pruner, seed=cfg.seed, heartbeat_s=heartbeat)
    return study
