"""Pieces the study modules share: a local search for a trial, and a fine-tune or baseline into the trial's run."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

FT_KEYS = ("data.", "finetune.", "seed", "device")


def search_locally(overrides: dict[str, Any], ctx: Any) -> Path:
    """Run a search with tracking off (its files stay in the work dir); returns its artifacts folder."""
    from ssnas_core.workflows.search import run_search

    search = {k: v for k, v in overrides.items() if not k.startswith("finetune.")}
    run_id = run_search({**search, "tracking.enabled": False, "tracking.work_dir": str(ctx.work_dir)})
    return ctx.work_dir / run_id / "artifacts"


def finetune_into(overrides: dict[str, Any], run: Any, genotype: Path | str | None, weights: Path | str | None,
                  width: int | None, cells: int | None, tags: dict[str, str] | None = None,
                  search_run: str | None = None) -> float:
    """Fine-tune ``genotype`` (inheriting ``weights``), or the architecture of the MLflow run ``search_run``, into
    the trial's run; returns the best val metric."""
    from ssnas_core.workflows.finetune import SEARCH_KEYS, _finetune_run, prepare

    ft = {k: v for k, v in overrides.items() if k.startswith(FT_KEYS)}
    with tempfile.TemporaryDirectory() as tmp:
        cfg, setup, geno, params = prepare(ft, search_run, str(genotype) if genotype else None,
                                           str(weights) if weights else None, width, cells, Path(tmp))
    converged = {k: params[k] for k in SEARCH_KEYS if k in params}  # shown by the report
    run.tracker.set_tags({"ssnas.dataset": setup.dataset.name, **converged, **(tags or {})})
    return _finetune_run(cfg, setup, geno, run.tracker, run.run_id, run.hook, run.checkpoints, register=False).val


def baseline_into(overrides: dict[str, Any], run: Any, model_name: str, tags: dict[str, str]) -> float:
    """Train a baseline into the trial's run; returns the best val metric."""
    from ssnas_core.config import RunConfig, with_overrides
    from ssnas_core.finetune.setup import build_baseline, build_finetune, load_data
    from ssnas_core.workflows.finetune import _finetune_run

    cfg = with_overrides(RunConfig(), {k: v for k, v in overrides.items() if k.startswith(FT_KEYS)})
    dataset = load_data(cfg)
    model = build_baseline(model_name, dataset, seed=cfg.seed)
    setup = build_finetune(cfg, model, dataset, [])
    run.tracker.set_tags({"ssnas.dataset": dataset.name, **tags})
    return _finetune_run(cfg, setup, None, run.tracker, run.run_id, run.hook, run.checkpoints, register=False).val


def check_data(ctx: Any) -> None:
    """The study's data loads and its device exists (bad input: one line, before the study is created)."""
    from ssnas_core.config import RunConfig, with_overrides
    from ssnas_core.finetune.setup import load_data
    from ssnas_core.search.setup import resolve_device

    cfg = with_overrides(RunConfig(), ctx.fixed)
    resolve_device(cfg.device)
    load_data(cfg)


def check_finetune(ctx: Any) -> None:
    """The fine-tune of every trial can be built: architecture (search run or genotype), weights, data, device."""
    from ssnas_core.search.setup import resolve_device
    from ssnas_core.workflows.finetune import prepare

    ft = {k: v for k, v in ctx.fixed.items() if k.startswith(FT_KEYS)}
    resolve_device(str(ft.get("device", "auto")))
    with tempfile.TemporaryDirectory() as tmp:
        prepare(ft, ctx.search_run, ctx.genotype, ctx.weights, ctx.width, ctx.cells, Path(tmp))
