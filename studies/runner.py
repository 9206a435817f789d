"""Create, join and run Optuna studies; one MLflow parent run per study, one nested run per logical trial.

* Storage: SQLite by default (one worker at a time), PostgreSQL for many workers
  (``pool_pre_ping``; each process owns its engine and disposes it at the end).
* Heartbeats: a worker that dies leaves its trial RUNNING until another worker's
  next ``ask`` marks it FAIL; ``RetryHeartbeatStaleTrialCallback`` then enqueues a
  retry with the same params, which resumes from the dead trial's checkpoint.
* One MLflow run per *logical* trial: keyed by (study, number of the first
  attempt), found by tags, so a retry continues the same run instead of opening
  a second one (optuna-integration's callback would reuse system_attrs instead).
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from ssnas_core.config import redact_uri
from ssnas_core.db_urls import check_db_url
from ssnas_core.errors import ConfigError, DivergenceError, TrackingError, TrialStopped, first_line
from ssnas_core.tracking.mlflow_store import check_reachable, sqlite_path
from ssnas_core.workflows.progress import progress_bar
from ssnas_core.workflows.runs import owner_tag
from studies import load_study_module

warnings.filterwarnings("ignore", category=ExperimentalWarning)  # retry_history is experimental since 3.0


class StudyError(ConfigError):
    """Bad storage URL, unknown study, unreachable database: exit 2."""


@dataclass
class StudyContext:
    """What every trial of a study shares (from the command line)."""

    study: str
    kind: str
    storage_url: str
    fixed: dict[str, Any] = field(default_factory=dict)
    search_run: str | None = None
    genotype: str | None = None
    weights: str | None = None
    width: int | None = None
    cells: int | None = None
    tracking_uri: str = ""
    experiment: str = ""
    work_dir: Path = Path("ssnas-runs")
    parent_run_id: str | None = None
    seeds: int = 3


def open_storage(url: str, heartbeat_s: int = 10, max_retry: int = 1) -> RDBStorage:
    """An RDB storage with heartbeats and retries; bad or unreachable URLs raise ``StudyError`` (an unsupported
    database ``ConfigError``)."""
    check_db_url(url, "storage URL")
    # Small pools: a worker needs one connection for trials and one for its heartbeat thread, and
    # PostgreSQL's default limit (100) is shared by every worker and the MLflow server.
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 2}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 60}}
    try:
        return RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=heartbeat_s, grace_period=3 * heartbeat_s,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=max_retry))
    except Exception as exc:  # sqlalchemy raises many types for bad URLs and refused connections
        raise StudyError(f"cannot open Optuna storage {redact_uri(url)!r}: {first_line(exc)}; check --storage and "
                         "that the database is running") from exc


def init_storage(url: str) -> None:
    """Create the Optuna tables of ``url`` if missing (what optuna-dashboard needs); ``StudyError`` if unreachable."""
    try:
        RDBStorage(url, engine_kwargs={"pool_size": 1, "max_overflow": 0} if not url.startswith("sqlite") else None
                   ).engine.dispose()
    except Exception as exc:
        raise StudyError(f"cannot open the Optuna storage {redact_uri(url)!r}: {first_line(exc)}; check the URL and "
                         "that the database is running") from exc


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    samplers: dict[str, Callable[[], optuna.samplers.BaseSampler]] = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "grid": lambda: optuna.samplers.BruteForceSampler(seed=seed),
    }
    if name not in samplers:
        raise StudyError(f"unknown sampler {name!r}: choose one of {', '.join(samplers)}")
    return samplers[name]()


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    pruners: dict[str, Callable[[], optuna.pruners.BasePruner]] = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1),
        "none": optuna.pruners.NopPruner,
    }
    if name not in pruners:
        raise StudyError(f"unknown pruner {name!r}: choose one of {', '.join(pruners)}")
    return pruners[name]()


def _frozen(trial: optuna.Trial) -> optuna.trial.FrozenTrial:
    return next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)


def retry_history(trial: optuna.Trial) -> list[int]:
    """Numbers of the earlier attempts of this trial (empty for a first attempt)."""
    return list(RetryHeartbeatStaleTrialCallback.retry_history(_frozen(trial)))


def logical_number(trial: optuna.Trial) -> int:
    """The number of the first attempt of this trial (retries carry it in their retry history)."""
    history = retry_history(trial)
    return history[0] if history else trial.number


@dataclass
class TrialRun:
    """The MLflow run of one logical trial, and how the trial reports per epoch."""

    tracker: Any
    run_id: str
    number: int
    checkpoints: Path
    hook: Callable[[int, float], None]


def trial_name(ctx: StudyContext, params: dict[str, Any], number: int) -> str:
    """``trial-<method>-<dataset>-rho<factor>-s<seed>-t<number>``: the run-name pattern of ssnas's other runs, the
    method being the one a compare trial drew, else the study's kind."""
    from ssnas_core.config import RunConfig, with_overrides
    from ssnas_core.workflows.runs import run_name

    merged = {**ctx.fixed, **params}
    cfg = with_overrides(RunConfig(), {k: merged[k] for k in ("data.dataset", "data.imbalance_factor", "seed")
                                       if k in merged})
    return f"{run_name('trial', str(merged.get('_method', ctx.kind)), cfg, cfg.data.dataset)}-t{number}"


def _trial_run(ctx: StudyContext, trial: optuna.Trial, params: dict[str, Any]) -> TrialRun:
    from ssnas_core.tracking.mlflow_adapter import MlflowTracker

    number = logical_number(trial)
    tags = {"mlflow.parentRunId": ctx.parent_run_id or "", "ssnas.owner": owner_tag(), "ssnas.study": ctx.study,
            "ssnas.trial": str(number),
            "ssnas.stage": "study", "ssnas.study_kind": ctx.kind}
    existing = _find_runs(ctx, {"ssnas.study": ctx.study, "ssnas.trial": str(number)})
    if existing:
        tracker = MlflowTracker.resume(ctx.tracking_uri, existing[0])
        tracker.set_tags({"ssnas.retries": str(len(retry_history(trial))), "ssnas.optuna_trial": str(trial.number),
                          "ssnas.owner": owner_tag()})
    else:
        tracker = MlflowTracker.start(ctx.tracking_uri, ctx.experiment, trial_name(ctx, params, number), tags)
        tracker.set_tags({"ssnas.optuna_trial": str(trial.number), "ssnas.retries": "0"})
    trial.set_user_attr("mlflow_run_id", tracker.run_id)

    def hook(epoch: int, value: float) -> None:
        if math.isfinite(value):
            trial.report(value, epoch)
        if trial.should_prune():
            raise TrialStopped(epoch)

    folder = ctx.work_dir / "studies" / ctx.study / f"trial_{number}"
    return TrialRun(tracker, tracker.run_id, number, folder, hook)


def _find_runs(ctx: StudyContext, tags: dict[str, str]) -> list[str]:
    from mlflow import MlflowClient

    client = MlflowClient(ctx.tracking_uri)
    exp = client.get_experiment_by_name(ctx.experiment)
    if exp is None:
        return []
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    return [r.info.run_id for r in client.search_runs([exp.experiment_id], query, order_by=["attributes.start_time"])]


def _parent_run(ctx: StudyContext, study: optuna.Study, create: bool) -> str:
    """The study's MLflow parent run: found by tag, else created (and remembered in the study)."""
    from ssnas_core.tracking.mlflow_adapter import MlflowTracker

    found = study.user_attrs.get("mlflow_parent_run_id") or next(
        iter(_find_runs(ctx, {"ssnas.study": ctx.study, "ssnas.study_role": "parent"})), None)
    if found:
        if create:  # a resumed study: its parent runs again until this process ends it
            from mlflow import MlflowClient

            MlflowClient(ctx.tracking_uri).update_run(str(found), status="RUNNING")
        return str(found)
    if not create:  # only `study run` creates the parent; a worker that came early waits for it
        deadline = time.time() + 120
        while time.time() < deadline:
            time.sleep(1)
            found = study.user_attrs.get("mlflow_parent_run_id")
            if found:
                _apply_context(ctx, study.user_attrs.get("context", {}))
                return str(found)
        raise StudyError(f"study {ctx.study!r} has no MLflow parent run yet: start it with `ssnas study run`")
    tracker = MlflowTracker.start(ctx.tracking_uri, ctx.experiment, ctx.study,
                                  {"ssnas.stage": "study", "ssnas.study": ctx.study, "ssnas.study_role": "parent",
                                   "ssnas.study_kind": ctx.kind, "ssnas.owner": owner_tag()})
    tracker.log_params({"study.kind": ctx.kind, "study.storage": ctx.storage_url.split("@")[-1],
                        **{f"fixed.{k}": v for k, v in ctx.fixed.items()}})
    study.set_user_attr("mlflow_parent_run_id", tracker.run_id)
    return tracker.run_id


def objective_for(ctx: StudyContext) -> Callable[[optuna.Trial], float]:
    module = load_study_module(ctx.kind)

    def objective(trial: optuna.Trial) -> float:
        params = module.suggest(trial, ctx)
        run = _trial_run(ctx, trial, params)
        try:
            value = float(module.run_trial({**ctx.fixed, **params}, ctx, run))
        except TrialStopped as stop:
            raise optuna.TrialPruned(str(stop)) from stop
        run.tracker.log_metrics({"trial/value": value}, step=0)
        run.tracker.set_tags({"ssnas.trial_state": "COMPLETE"})
        print(f"ssnas study: {ctx.study}: trial {run.number} value {value:.4f} with "  # one line per trial
              + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()),
              file=sys.stderr, flush=True)
        return value

    return objective


def preflight(ctx: StudyContext, module: Any) -> None:
    """Check what every trial of ``study run`` will need before the study or any run exists: the data, device
    and architecture (the module's ``preflight``, else ``common.check_data``). A bad input fails here with one
    line, not inside trial 0 with a study created and its parent run left RUNNING. (A worker takes the study's
    context from the storage; its creator checked it.)"""
    from studies.common import check_data

    getattr(module, "preflight", check_data)(ctx)


def _check_storage_exists(ctx: StudyContext) -> None:
    """A worker's SQLite storage must be there already (opening one creates an empty database)."""
    database = sqlite_path(ctx.storage_url)
    if database is not None and not database.is_file():
        raise StudyError(f"no Optuna storage at {database}: start the study first with `ssnas study run {ctx.kind} "
                         f"--study-name {ctx.study}` and the same --storage")


def run_study(ctx: StudyContext, create: bool, n_trials: int | None, timeout: float | None, sampler: str,
              pruner: str, seed: int, heartbeat_s: int) -> optuna.Study:
    """Create (``create``) or join a study and run trials until the study holds ``n_trials`` finished ones."""
    module = load_study_module(ctx.kind)
    if getattr(module, "NO_PRUNING", False):
        pruner = "none"
    check_db_url(ctx.storage_url, "storage URL")  # before anything else reads or creates a file
    if create:
        check_reachable(ctx.tracking_uri)
        preflight(ctx, module)
    else:  # a worker joins a study that exists: nothing is created (no storage file, no store) for a wrong name
        _check_storage_exists(ctx)
    storage = open_storage(ctx.storage_url, heartbeat_s)  # checks the URL again: other callers rely on it
    try:
        if create:
            study = optuna.create_study(study_name=ctx.study, storage=storage, pruner=make_pruner(pruner),
                                        direction=module.DIRECTION, load_if_exists=True)
            study.set_user_attr("kind", ctx.kind)
            # the dashboard's name for the objective: every study here maximises the fine-tune's val metric
            metric = str(ctx.fixed.get("finetune.val_metric", "auto"))
            study.set_metric_names([f"val {metric if metric != 'auto' else 'balanced_acc (auc if multi-label)'}"])
            study.set_user_attr("context", _context_attrs(ctx))
            reference = getattr(module, "reference", None)
            if reference is not None and not study.trials:  # a new study: its first trial is the untuned setting
                study.enqueue_trial(reference(ctx), user_attrs={"ssnas.reference": True}, skip_if_exists=True)
        else:
            try:
                study = optuna.load_study(study_name=ctx.study, storage=storage, pruner=make_pruner(pruner))
            except KeyError as exc:
                raise StudyError(f"no study named {ctx.study!r} in the storage: start it with "
                                 f"`ssnas study run {ctx.kind} --study-name {ctx.study}`") from exc
            _apply_context(ctx, study.user_attrs.get("context", {}))
            check_reachable(ctx.tracking_uri)  # the study's tracking store, known once its context is read
        # The sampler, made once the study's context is known, is seeded from the study's state: a resumed study
        # does not replay its first suggestions, and each worker draws its own (workers sharing one seed would
        # suggest the same parameters in the random start-up phase).
        study.sampler = _sampler(module, ctx, sampler, _sampler_seed(seed, len(study.trials), worker=not create))
        ctx.parent_run_id = _parent_run(ctx, study, create)
        if create and n_trials:
            study.set_user_attr("n_trials", n_trials)
        total = n_trials or int(study.user_attrs.get("n_trials", module.DEFAULT_TRIALS))
        finished = (TrialState.COMPLETE, TrialState.PRUNED)
        status, reason = "KILLED", "the study process stopped before the budget was reached"
        try:
            if len(study.get_trials(deepcopy=False, states=finished)) < total:
                # The study stops at `total` finished trials (the callback); failed ones (a diverged trial, a
                # dead worker's) do not count, so a process may run up to twice the budget. A diverged trial
                # (e.g. too high a learning rate) is a FAIL of that trial, not of the worker.
                with progress_bar(total, f"study {ctx.study}: trials") as bar:
                    def advance(study: optuna.Study, *_: Any) -> None:  # also an Optuna callback
                        bar(min(len(study.get_trials(deepcopy=False, states=finished)), total), total)

                    advance(study)  # a resumed study starts where it is
                    study.optimize(objective_for(ctx), n_trials=2 * total, timeout=timeout,
                                   catch=(TrackingError, DivergenceError),
                                   callbacks=[MaxTrialsCallback(total, states=finished), advance], gc_after_trial=True)
                _retry_dead_workers_trials(ctx, study, 3 * heartbeat_s)
            _summarize(ctx, study)
            if create:
                _register_best(ctx, study)
            done = len(study.get_trials(deepcopy=False, states=finished))
            status, reason = ("FINISHED", f"{done} of {total} trials finished") if done >= total else \
                ("KILLED", f"stopped with {done} of {total} trials finished (--timeout or failed trials); "
                           "run `ssnas study run` again to continue")
        except Exception as exc:
            status, reason = "FAILED", " ".join(str(exc).split())[:300] or type(exc).__name__
            raise
        finally:
            if create and ctx.parent_run_id:  # only the study's creator ends its parent run
                _end_parent(ctx, status, reason)
        return study
    finally:
        storage.engine.dispose()


def _end_parent(ctx: StudyContext, status: str, reason: str) -> None:
    """End the study's MLflow parent run with ``status`` and the reason as tag ``ssnas.end_reason``."""
    from mlflow import MlflowClient

    try:
        client = MlflowClient(ctx.tracking_uri)
        client.set_tag(ctx.parent_run_id, "ssnas.end_reason", reason)
        client.set_terminated(ctx.parent_run_id, status)
    except Exception as exc:  # noqa: BLE001 - the study's own outcome matters more than its parent's status
        print(f"ssnas study: warning: could not end the parent run {ctx.parent_run_id}: {exc}", file=sys.stderr)


def _retry_dead_workers_trials(ctx: StudyContext, study: optuna.Study, grace_s: float) -> None:
    """Fail and retry the trials of workers that died, before this process leaves the study.

    Optuna notices a dead worker's trial (its heartbeat stale) only when a live process starts a trial. If
    the budget is reached before that happens, the dead trial would stay RUNNING and never be retried. So,
    while other trials are still running, wait out one grace period, fail the stale ones (their retry is
    queued by ``RetryHeartbeatStaleTrialCallback``) and run the retries here; live workers' trials keep
    their fresh heartbeats and are left alone.
    """
    if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        return
    time.sleep(grace_s + 1)
    optuna.storages.fail_stale_trials(study)
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    if waiting:
        study.optimize(objective_for(ctx), n_trials=len(waiting), catch=(TrackingError, DivergenceError),
                       gc_after_trial=True)


def _sampler_seed(seed: int, n_existing: int, worker: bool) -> int:
    """``seed`` and the study's trial count; a worker adds its process's entropy."""
    entropy = [seed, n_existing] + ([os.getpid(), time.time_ns()] if worker else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _sampler(module: Any, ctx: StudyContext, name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The study's own sampler when it defines one (compare_methods: a grid), else ``--sampler``."""
    own = getattr(module, "sampler", None)
    return own(ctx, seed) if own is not None else make_sampler(name, seed)


def _context_attrs(ctx: StudyContext) -> dict[str, Any]:
    return {"fixed": ctx.fixed, "search_run": ctx.search_run, "genotype": ctx.genotype, "weights": ctx.weights,
            "width": ctx.width, "cells": ctx.cells, "experiment": ctx.experiment, "kind": ctx.kind,
            "seeds": ctx.seeds}


def _apply_context(ctx: StudyContext, saved: dict[str, Any]) -> None:
    """A worker takes the study's fixed settings from the storage unless it was given its own."""
    ctx.kind = saved.get("kind", ctx.kind)
    ctx.fixed = {**saved.get("fixed", {}), **ctx.fixed}
    for key in ("search_run", "genotype", "weights", "width", "cells"):
        if getattr(ctx, key) is None:
            setattr(ctx, key, saved.get(key))
    ctx.experiment = ctx.experiment or saved.get("experiment", "")
    ctx.seeds = int(saved.get("seeds", ctx.seeds))


def _summarize(ctx: StudyContext, study: optuna.Study) -> None:
    states = [t.state for t in study.trials]
    counts = {s.name: states.count(s) for s in TrialState if states.count(s)}
    print(f"ssnas study {ctx.study}: {counts}", file=sys.stderr)
    try:
        best = study.best_trial
    except ValueError:
        return
    print(f"ssnas study {ctx.study}: best trial {best.number} value {best.value:.4f} params {best.params}",
          file=sys.stderr)
    for t in study.trials:
        if t.user_attrs.get("ssnas.reference") and t.state == TrialState.COMPLETE:
            print(f"ssnas study {ctx.study}: untuned reference (trial {t.number}, {t.params}) value {t.value:.4f}",
                  file=sys.stderr)


def _register_best(ctx: StudyContext, study: optuna.Study) -> None:
    """The best trial's logged model goes to the registry, as a fine-tune's does."""
    from ssnas_core.tracking.mlflow_adapter import get_run_info
    from ssnas_core.tracking.mlflow_registry import register_model

    try:
        best = study.best_trial
    except ValueError:
        return
    run_id = best.user_attrs.get("mlflow_run_id")
    if not run_id:
        return
    info = get_run_info(ctx.tracking_uri, run_id)
    metric = info["tags"].get("ssnas.val_metric", "val")
    name = f"ssnas-{info['tags'].get('ssnas.dataset', 'unknown')}"
    version, champion = register_model(ctx.tracking_uri, name, run_id, f"val/{metric}", float(best.value))
    print(f"ssnas study {ctx.study}: registered the best trial as {name} version {version}"
          + (" (new champion)" if champion else ""), file=sys.stderr)


def best_so_far(study: str, storage_url: str) -> tuple[float | None, dict[str, Any], int]:
    """The best finished trial's value and parameters (None, {} when none finished) and how many finished."""
    loaded = optuna.load_study(study_name=study, storage=open_storage(storage_url))
    done = [t for t in loaded.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        return None, {}, 0
    best = loaded.best_trial
    return best.value, dict(best.params), len(done)
