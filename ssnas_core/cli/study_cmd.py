"""``ssnas study run|worker NAME``: the bridge from the CLI to ``studies/`` (which owns optuna)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ssnas_core.cli.runs import tracking_uri
from ssnas_core.config import RunConfig, with_overrides


def run(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    """Create/resume (``run``) or join (``worker``) a study; returns the exit status."""
    try:
        from studies.runner import StudyContext, run_study
    except ImportError as err:  # optuna missing
        from ssnas_core.errors import ConfigError

        raise ConfigError(f"studies need optuna ({err}): pip install -e '.[studies]'") from err
    from ssnas_core.data.dataset import safe_name

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
    return 0
