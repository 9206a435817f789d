"""``ssnas study run|worker NAME``: the bridge from the CLI to ``studies/`` (which owns optuna)."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Any

from ssnas_core.cli.runs import tracking_uri
from ssnas_core.config import RunConfig, with_overrides


def run(args: argparse.Namespace, overrides: dict[str, Any]) -> str:
    """Create/resume (``run``) or join (``worker``) a study; returns the study's name."""
    try:
        from studies.runner import StudyContext, run_study
    except ImportError as err:  # optuna missing
        from ssnas_core.errors import ConfigError

        raise ConfigError(f"studies need optuna ({err}): pip install -e '.[studies]'") from err
    from ssnas_core.data.dataset import safe_name
    from ssnas_core.errors import ConfigError

    if args.study_name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", args.study_name):
        raise ConfigError(f"--study-name {args.study_name!r} is invalid: use up to 100 letters, digits, '.', '_' "
                          "or '-' (it names an MLflow experiment, runs and folders)")
    if args.n_trials is not None and args.n_trials < 1:
        raise ConfigError(f"--n-trials {args.n_trials} is invalid: give the number of finished trials to reach (>= 1)")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise ConfigError(f"--timeout {args.timeout} is invalid: give seconds > 0")
    cfg = with_overrides(RunConfig(), overrides)
    study = args.study_name or f"{args.name}-{safe_name(cfg.data.dataset)}"
    ctx = StudyContext(
        study=study, kind=args.name, storage_url=args.storage,
        fixed={k: v for k, v in overrides.items()
               if k.split(".")[0] in ("data", "finetune", "search", "seed", "device")},
        seeds=args.seeds,
        search_run=args.search_run, genotype=args.genotype, weights=args.weights, width=args.width,
        cells=args.cells, tracking_uri=tracking_uri(cfg),
        experiment=cfg.tracking.experiment or f"ssnas-study-{study}", work_dir=Path(cfg.tracking.work_dir),
    )
    run_study(ctx, create=args.study_command == "run", n_trials=args.n_trials, timeout=args.timeout,
              sampler=args.sampler, pruner=args.pruner, seed=cfg.seed, heartbeat_s=args.heartbeat)
    return study
