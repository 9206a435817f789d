"""A tracked search (``ssnas search``, ``api.search``): compose data, engine, tracker and checkpoints; resume into
the same run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ssnas_core import lease
from ssnas_core.checkpoint import LAST, load_checkpoint, save_checkpoint
from ssnas_core.config import (
    RUNTIME_KEYS,
    SEARCH_SECTIONS,
    RunConfig,
    config_sha,
    flatten,
    from_flat,
    redact_uri,
    resolve,
    shareable,
    with_overrides,
)
from ssnas_core.errors import ConfigError
from ssnas_core.search.artifacts import SearchArtifacts, alpha_metrics
from ssnas_core.search.engine import EpochReport
from ssnas_core.search.setup import build_search
from ssnas_core.search_space.network import count_parameters
from ssnas_core.tracking.base import Tracker
from ssnas_core.workflows.progress import progress_bar
from ssnas_core.workflows.runs import ending, open_tracker, resolve_experiment, run_name


def method_name(cfg: RunConfig) -> str:
    """``fairdarts-bt``, ``darts-simclr``, ... as the ``ssnas.method`` tag."""
    relax = "fairdarts" if cfg.search.relaxation == "sigmoid" else "darts"
    return f"{relax}-{ {'barlow-twins': 'bt', 'simclr': 'simclr', 'ce': 'ce'}[cfg.search.ssl] }"


def _resume_config(overrides: dict[str, Any], state: dict[str, Any]) -> RunConfig:
    saved = from_flat(state["config"])
    flat = flatten(saved)
    changed = {k: (flat.get(k), v) for k, v in overrides.items() if k not in RUNTIME_KEYS and flat.get(k) != v}
    if changed:
        listing = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise ConfigError(f"--resume keeps the run's configuration, but these options differ: {listing}; "
                          "drop them or start a new search")
    runtime = {k: v for k, v in overrides.items() if k in RUNTIME_KEYS}
    if ":***@" in saved.tracking.tracking_uri and "tracking.tracking_uri" not in runtime:
        # the password was never saved: take the store from the environment, or ask for it
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            raise ConfigError(f"the run was tracked at {saved.tracking.tracking_uri}, whose password is not saved: "
                              "pass --tracking-uri again or set MLFLOW_TRACKING_URI")
        runtime["tracking.tracking_uri"] = ""
    return with_overrides(saved, runtime)


def _log_epoch(tracker: Tracker, report: EpochReport, cfg: RunConfig, primitives: tuple[str, ...]) -> None:
    ssl_key = {"barlow-twins": "loss_bt", "simclr": "loss_simclr", "ce": "loss_ce"}[cfg.search.ssl]
    rows = []
    for i in range(len(report.losses["loss_train"])):
        metrics = {f"search/{ssl_key}": report.losses["loss_train"][i],
                   f"search/val_{ssl_key}": report.losses["loss_val"][i],
                   "search/loss_arch": report.losses["loss_arch"][i], "search/lr": report.lr}
        if cfg.search.relaxation == "sigmoid":
            metrics["search/loss_zero_one"] = report.losses["loss_zero_one"][i]
        rows.append((metrics, report.first_step + i))
    tracker.log_metric_steps(rows)  # the epoch's per-step values in one batched call
    epoch_metrics = alpha_metrics(report.arch_weights, primitives, cfg.search.nodes)
    for cell, count in report.genotype.skip_count().items():
        epoch_metrics[f"search/skip_count/{cell}"] = float(count)
    epoch_metrics.update({f"search/{k}": v for k, v in report.extra.items()})
    epoch_metrics["search/epoch_seconds"] = report.seconds
    epoch_metrics["search/images_per_s"] = report.images / max(report.seconds, 1e-9)
    tracker.log_metrics(epoch_metrics, step=report.epoch)


def _epoch_line(report: EpochReport) -> str:
    """One line per epoch: how decided the alphas are and how many nodes still fall back."""
    x = report.extra
    cells = [k.split("/", 1)[1] for k in x if k.startswith("decided/")]
    decided = " ".join(f"{c} {x[f'decided/{c}']:.3f}" for c in cells)
    fallback = " ".join(f"{c} {int(x[f'fallback_nodes/{c}'])}" for c in cells)
    return (f"ssnas search: epoch {report.epoch + 1}: decided {decided}; fallback nodes {fallback}; "
            f"zero-one gradient share {x.get('grad_share_01', 0.0):.3g}; {report.seconds:.0f} s")


def unconverged_warning(command: str, fallback: dict[str, int]) -> str:
    """The one warning line for a search whose genotype has fallback nodes."""
    cells = ", ".join(f"{n} of the {cell} cell" for cell, n in fallback.items() if n)
    return (f"{command}: warning: the search did not converge: {sum(fallback.values())} node(s) ({cells}) have no "
            "operation at the threshold and took the fallback gene, so that part of the cell is not searched; "
            "search longer (--epochs) or with a higher --search.arch-lr")


def _print_ui_hint(tracker: Tracker, run_id: str) -> None:
    uri = getattr(tracker, "tracking_uri", None)
    if uri is None:
        return
    uri = redact_uri(uri)
    page = f"#/experiments/{getattr(tracker, 'experiment_id', '0')}/runs/{run_id}"
    if uri.startswith("http"):
        print(f"ssnas search: see {uri.rstrip('/')}/{page}", file=sys.stderr)
    else:
        print(f"ssnas search: to see it, run  mlflow ui --app-name ssnas --backend-store-uri {uri}  and open "
              f"http://127.0.0.1:5000/{page}", file=sys.stderr)


def run_search(overrides: dict[str, Any], resume: str | None = None, tracker: Tracker | None = None) -> str:
    """Run (or resume) a search; returns the run id. Raises ``SsnasError`` on bad input before any run opens.

    ``tracker``: report to this tracker instead of opening an MLflow run (``ssnas_core.api``; not with resume).
    """
    cfg = resolve(with_overrides(RunConfig(), overrides))
    if resume is not None and not resume.strip():
        raise ConfigError("--resume was given an empty run id: pass the id of the run to continue, or leave "
                          "--resume out to start a new search")
    if resume:
        run_dir = Path(cfg.tracking.work_dir) / resume
        if not (run_dir / "checkpoints" / LAST).exists() and cfg.tracking.enabled:
            from ssnas_core.workflows.runs import fetch_checkpoint

            fetch_checkpoint(cfg, resume, run_dir / "checkpoints")  # an unknown run fails here, leaving nothing
        if not run_dir.is_dir():
            return _resume(cfg, overrides, resume, run_dir)  # fails with the checkpoint's one-line error
        lease.acquire(run_dir, resume)  # one process owns a run: refused while its owner lives
        try:
            return _resume(cfg, overrides, resume, run_dir)
        finally:
            lease.release(run_dir)
    return _run(cfg, None, None, tracker)


def _resume(cfg: RunConfig, overrides: dict[str, Any], resume: str, run_dir: Path) -> str:
    state = load_checkpoint(run_dir / "checkpoints")
    if "search.arch_betas" not in state["config"]:
        raise ConfigError(f"run {resume} was made by an older ssnas (DARTS optimiser and 8 operations under "
                          "the sigmoid relaxation) and cannot be resumed by this one: start a new search")
    return _run(_resume_config(overrides, state), state, resume)


def _run(cfg: RunConfig, state: dict[str, Any] | None, resume: str | None, given: Tracker | None = None) -> str:
    setup = build_search(cfg)  # loads and validates the data: bad input fails here, before any run exists
    engine, dataset = setup.engine, setup.dataset
    if state is not None:
        engine.load_state_dict(state["engine"])
    experiment = resolve_experiment(cfg, dataset.name)
    tags = {"ssnas.stage": "search", "ssnas.method": method_name(cfg), "ssnas.dataset": dataset.name,
            "ssnas.imbalance_factor": str(cfg.data.imbalance_factor), "ssnas.config_sha": config_sha(cfg)}
    tags["ssnas.device"] = str(setup.device)  # the device actually used, not "auto"
    tracker, run_id = open_tracker(cfg, experiment, tags, resume,
                                   run_name("search", method_name(cfg), cfg, dataset.name), given)
    run_dir = Path(cfg.tracking.work_dir) / run_id
    lease.acquire(run_dir, run_id)  # a new run's dir is new; a resumed one's lease is ours already
    try:
        return _train(cfg, setup, tracker, run_id, state is not None)
    finally:
        if resume is None:
            lease.release(run_dir)


def _train(cfg: RunConfig, setup: Any, tracker: Tracker, run_id: str, resumed: bool) -> str:
    engine, dataset = setup.engine, setup.dataset
    run_dir = Path(cfg.tracking.work_dir) / run_id
    primitives = engine.supernet.primitives
    artifacts = SearchArtifacts(run_dir, tracker, primitives, cfg.search.nodes)
    flat = shareable(flatten(cfg, sections=SEARCH_SECTIONS))  # params, config.json, checkpoint: no password
    with ending(tracker) as outcome:
        if not resumed:
            tracker.log_params(flat)
            tracker.log_inputs(setup.inputs)
            info = {"n_params_supernet": count_parameters(engine.supernet),
                    "n_params_supernet_with_head": count_parameters(engine.objective),
                    "device": str(setup.device),
                    "train_class_counts": setup.train_counts, "steps_per_epoch": engine.steps_per_epoch}
            (run_dir / "artifacts").mkdir(parents=True, exist_ok=True)
            (run_dir / "artifacts" / "config.json").write_text(json.dumps({**flat, **info}, indent=2))
            tracker.log_artifact(run_dir / "artifacts" / "config.json")
            tracker.log_metrics({"search/n_params_supernet": float(info["n_params_supernet"]),
                                 "search/n_params_supernet_with_head": float(info["n_params_supernet_with_head"])},
                                step=0)
            tracker.set_tags({"ssnas.work_dir": str(run_dir.resolve())})
        print(f"ssnas search: run {run_id} on {setup.device}, {dataset.name}, "
              f"{engine.steps_per_epoch} steps/epoch, from epoch {engine.epoch}", file=sys.stderr)
        last = min(cfg.search.epochs, cfg.search.stop_after or cfg.search.epochs)
        while engine.epoch < last:
            with progress_bar(engine.steps_per_epoch, f"epoch {engine.epoch + 1}/{cfg.search.epochs}") as bar:
                report = engine.run_epoch(progress=bar)
            # Metrics before the checkpoint: a kill between the two replays the epoch on resume (bit for bit) and
            # the tracker skips the steps it already holds; the other order lost the epoch's metrics for good.
            _log_epoch(tracker, report, cfg, primitives)
            save_checkpoint(run_dir / "checkpoints", {"engine": engine.state_dict(), "config": flat,
                                                       "config_sha": config_sha(cfg), "run_id": run_id})
            print(_epoch_line(report), file=sys.stderr)
            artifacts.epoch(report, engine.alpha_history, final=engine.epoch == last)
            tracker.log_artifact(run_dir / "checkpoints" / LAST, "checkpoints")
        genotype = engine.supernet.genotype(cfg.search.threshold)
        artifacts.final(genotype, engine.supernet.state_dict())
        fallback = engine.supernet.fallback_nodes(cfg.search.threshold)
        tracker.set_tags({"ssnas.genotype": genotype.describe(),
                          "ssnas.fallback_nodes": str(sum(fallback.values()))})
        if sum(fallback.values()):
            print(unconverged_warning("ssnas search", fallback), file=sys.stderr)
        outcome.status = "FINISHED"
        _print_ui_hint(tracker, run_id)
        return run_id
