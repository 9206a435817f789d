"""A tracked fine-tune or baseline (``ssnas finetune``/``baseline``, ``api.finetune``/``baseline``): derived network
from a search run (or genotype file), the fine-tune loss, evaluation, registry."""

from __future__ import annotations

import copy
import json
import pickle
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ssnas_core.checkpoint import LAST, load_checkpoint, save_checkpoint
from ssnas_core.config import FINETUNE_SECTIONS, RunConfig, config_sha, flatten, shareable, with_overrides
from ssnas_core.errors import ConfigError, first_line, read_text
from ssnas_core.evaluation.metrics import MULTILABEL, classification_metrics
from ssnas_core.finetune.losses import class_prior
from ssnas_core.finetune.portable import write_portable
from ssnas_core.finetune.posthoc import fit_metric, fit_tau, prior_term
from ssnas_core.finetune.report import write_outputs
from ssnas_core.finetune.serving import ServingModel
from ssnas_core.finetune.setup import (
    FinetuneSetup,
    build_baseline,
    build_derived,
    build_finetune,
    check_head,
    load_data,
)
from ssnas_core.search.artifacts import SUMMARY
from ssnas_core.search_space.genotype import Genotype, fallback_nodes
from ssnas_core.search_space.network import count_parameters
from ssnas_core.search_space.primitives import FAIRDARTS_PRIMITIVES, PRIMITIVES
from ssnas_core.tracking.base import Tracker
from ssnas_core.workflows.progress import progress_bar
from ssnas_core.workflows.runs import ending, open_tracker, resolve_experiment, run_name, tracking_uri
from ssnas_core.workflows.search import unconverged_warning

# Data settings a fine-tune takes from its search run unless given on the command line.
INHERITED_DATA = ("data.dataset", "data.data_root", "data.size", "data.imbalance_factor")


def val_metric_name(cfg: RunConfig, task: str) -> str:
    if cfg.finetune.val_metric != "auto":
        return cfg.finetune.val_metric
    return "auc" if task == MULTILABEL else "balanced_acc"


def _from_search_run(cfg: RunConfig, run_id: str, dst: Path) -> tuple[dict[str, str], Path, Path | None]:
    """The search run's params, its genotype.json and supernet.pt (local work dir first, else MLflow)."""
    from ssnas_core.tracking.mlflow_adapter import download_artifact, get_run_info

    local = Path(cfg.tracking.work_dir) / run_id / "artifacts"
    info = get_run_info(tracking_uri(cfg), run_id) if cfg.tracking.enabled else {"params": {}, "tags": {}}
    if cfg.tracking.enabled and info["tags"].get("ssnas.stage") != "search":
        raise ConfigError(f"run {run_id} is not a search run (ssnas.stage={info['tags'].get('ssnas.stage')!r}): "
                          "pass the run id that `ssnas search` printed")
    if (local / "genotype.json").exists():
        if not info["params"] and (local / "config.json").exists():
            info["params"] = {k: str(v) for k, v in json.loads((local / "config.json").read_text()).items()}
        return info["params"], local / "genotype.json", local / "supernet.pt"
    if not cfg.tracking.enabled:
        raise ConfigError(f"search run {run_id} has no genotype in {local}: enable tracking to fetch it from MLflow")
    genotype = download_artifact(tracking_uri(cfg), run_id, "genotype.json", dst)
    if genotype is None:
        raise ConfigError(f"search run {run_id} has no genotype.json: it did not finish; resume it first")
    download_artifact(tracking_uri(cfg), run_id, SUMMARY, dst)  # beside the genotype, when the search wrote one
    return info["params"], genotype, download_artifact(tracking_uri(cfg), run_id, "supernet.pt", dst)


def _load_weights(path: Path | None) -> dict[str, torch.Tensor] | None:
    if path is None:
        return None
    fix = "pass the supernet.pt of a search run, or a file saved with torch.save(model.state_dict(), path)"
    if path.is_dir():
        raise ConfigError(f"--weights {path} is a folder: {fix}")
    if not path.exists():
        raise ConfigError(f"--weights {path} does not exist: {fix}")
    if not zipfile.is_zipfile(path):  # what torch.save has written since PyTorch 1.6
        raise ConfigError(f"--weights {path} is not a PyTorch weights file (torch.save writes a zip archive): {fix}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # torch's advice (weights_only=False) would run the file's code: not ours
        raise ConfigError(f"--weights {path} holds objects other than tensors (a pickled model, numpy arrays?), "
                          f"which are not loaded, for safety: {fix}") from err
    except Exception as err:  # noqa: BLE001 - not a zip, truncated, unreadable: torch raises many types
        raise ConfigError(f"--weights {path} is not a PyTorch weights file ({first_line(err)[:120]}): {fix}") from err
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ConfigError(f"--weights {path} is not a state dict (names to tensors): {fix}")
    return {k.removeprefix("supernet."): v for k, v in state.items()}


def prepare(overrides: dict[str, Any], search_run: str | None, genotype_file: str | None,
            weights_file: str | None, width: int | None, cells: int | None, tmp: Path
            ) -> tuple[RunConfig, FinetuneSetup, Genotype, dict[str, str]]:
    """Resolve the architecture and data, build the engine. All bad input fails here, before any run."""
    cfg = with_overrides(RunConfig(), overrides)
    params: dict[str, str] = {}
    if search_run:
        params, genotype_path, weights_path = _from_search_run(cfg, search_run, tmp)
        inherited_data = {k: params[k] for k in INHERITED_DATA if k in params and k not in overrides}
        cfg = with_overrides(cfg, inherited_data)
    elif genotype_file:
        genotype_path, weights_path = Path(genotype_file), Path(weights_file) if weights_file else None
        if not genotype_path.exists():
            raise ConfigError(f"--genotype {genotype_path} does not exist: pass the genotype.json of a search run")
        params = _sibling_config(genotype_path)  # the search's settings, when its config.json lies beside
    else:
        raise ConfigError("say which architecture to fine-tune: --search-run RUN_ID or --genotype FILE")
    for flag, value in (("--width", width), ("--cells", cells)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} {value} is invalid: give a whole number >= 1, or leave it out to use the "
                              "search's")
    genotype = Genotype.from_json(read_text(genotype_path, "--genotype"))
    width = width if width is not None else int(params.get("search.width", 16))
    cells = cells if cells is not None else int(params.get("search.cells", 3))
    if params.get("search.nodes") and int(params["search.nodes"]) != genotype.n_nodes:
        raise ConfigError(f"genotype has {genotype.n_nodes} nodes but the search used {params['search.nodes']}")
    dataset = load_data(cfg)
    searched = _load_weights(weights_path)
    summary = _sibling_summary(genotype_path)
    fallback = summary.get("fallback_nodes") if summary else None
    if fallback is None and searched is not None:
        fallback = search_fallback(searched, params)
    if fallback is not None:
        params = {**params, FALLBACK_KEY: str(sum(fallback.values()))}
        if sum(fallback.values()):
            print(unconverged_warning("ssnas finetune", fallback), file=sys.stderr)
    if summary:
        decided = summary.get("decided_fraction", {})
        params = {**params, DECIDED_KEY: "/".join(f"{decided[c]:.3f}" for c in ("normal", "reduce") if c in decided),
                  SEARCH_EPOCHS_KEY: str(summary.get("epochs", "?"))}
    state = searched if cfg.finetune.inherit else None
    if state is not None:
        check_head(state, dataset.n_classes)
    model, inherited = build_derived(genotype, dataset, width, cells, state, seed=cfg.seed)
    if state is not None and not inherited:
        raise ConfigError(f"--weights match no tensor of the derived network (width {width}, cells {cells}): "
                          "they belong to another search space; pass matching --width/--cells or --no-inherit")
    return cfg, build_finetune(cfg, model, dataset, inherited), genotype, params


FALLBACK_KEY = "ssnas.fallback_nodes"
DECIDED_KEY = "ssnas.decided_fraction"  # normal/reduce, from the search's search_summary.json
SEARCH_EPOCHS_KEY = "ssnas.search_epochs"
SEARCH_KEYS = (FALLBACK_KEY, DECIDED_KEY, SEARCH_EPOCHS_KEY)  # what a fine-tune tags about its search


def _sibling_summary(genotype_path: Path) -> dict[str, Any]:
    """The ``search_summary.json`` beside a search's ``genotype.json`` (empty if none or unreadable)."""
    try:
        summary = json.loads((genotype_path.parent / SUMMARY).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(summary, dict) or not isinstance(summary.get("fallback_nodes", {}), dict) \
            or not isinstance(summary.get("decided_fraction", {}), dict):
        return {}
    return summary


def search_fallback(state: dict[str, torch.Tensor], params: dict[str, str]) -> dict[str, int] | None:
    """Fallback nodes per cell of the search whose supernet weights are ``state`` (None: not a sigmoid search).

    Read from the searched alphas themselves, so it holds for ``--genotype/--weights`` and for runs made
    before the count was tagged: 7 operations are FairDARTS' set, 8 DARTS' (with ``none``).
    """
    alphas = {cell: state.get(f"alpha_{cell}") for cell in ("normal", "reduce")}
    if any(a is None or a.ndim != 2 for a in alphas.values()):
        return None
    n_ops = alphas["normal"].shape[1]  # type: ignore[union-attr]
    relaxation = params.get("search.relaxation", "sigmoid" if n_ops == len(FAIRDARTS_PRIMITIVES) else "")
    if relaxation == "softmax":  # DARTS' rule always keeps the two strongest edges: no fallback
        return {"normal": 0, "reduce": 0}
    if relaxation != "sigmoid" or n_ops not in (len(FAIRDARTS_PRIMITIVES), len(PRIMITIVES)):
        return None
    primitives = FAIRDARTS_PRIMITIVES if n_ops == len(FAIRDARTS_PRIMITIVES) else PRIMITIVES
    threshold = float(params.get("search.threshold", 0.85))
    n_nodes = int(params.get("search.nodes", 4))
    try:
        return {cell: fallback_nodes(torch.sigmoid(a.float()).numpy(), n_nodes, "sigmoid", threshold, primitives)
                for cell, a in alphas.items() if a is not None}
    except ValueError:  # alphas of another cell size
        return None


def _sibling_config(genotype_path: Path) -> dict[str, str]:
    """The search settings in the ``config.json`` beside a search's ``genotype.json`` (empty if none)."""
    try:
        flat = json.loads((genotype_path.parent / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: str(v) for k, v in flat.items() if k.startswith("search.")} if isinstance(flat, dict) else {}


EpochHook = Callable[[int, float], None]


def train(cfg: RunConfig, setup: FinetuneSetup, tracker: Tracker, metric: str, on_epoch_end: EpochHook | None = None,
          checkpoints: Path | None = None) -> tuple[dict[str, Any], int]:
    """Epochs with val metrics; returns the best-val model state (on the host) and its epoch.

    Args:
        on_epoch_end: called with (epoch, val metric) after each epoch, e.g. to report to Optuna and prune.
        checkpoints: folder for a per-epoch checkpoint; an existing one is resumed from (study retries).
    """
    engine, task = setup.engine, setup.dataset.task
    best_state, best_value, best_epoch = copy.deepcopy(engine.model.state_dict()), -np.inf, 0
    if checkpoints is not None and (checkpoints / LAST).exists():
        saved = load_checkpoint(checkpoints)
        engine.load_state_dict(saved["engine"])
        best_state, best_value, best_epoch = saved["best_state"], float(saved["best_value"]), int(saved["best_epoch"])
        tracker.set_tags({"ssnas.resumed_from_epoch": str(engine.epoch)})
    while engine.epoch < cfg.finetune.epochs:
        epoch = engine.epoch
        start = time.perf_counter()
        with progress_bar(engine.steps_per_epoch, f"finetune epoch {epoch + 1}/{cfg.finetune.epochs}") as bar:
            loss = engine.run_epoch(progress=bar)
        val = classification_metrics(*engine.evaluate("val"), task, setup.train_counts)
        tracker.log_metrics({"train/loss": loss, **{f"val/{k}": v for k, v in val.items() if "/" not in k}},
                            step=epoch)
        value = val[metric] if np.isfinite(val[metric]) else -np.inf
        if value > best_value:
            best_value, best_epoch = value, epoch
            best_state = {k: v.detach().cpu().clone() for k, v in engine.model.state_dict().items()}
        # One line per epoch: under the epoch's step bar on a terminal, instead of it in a log file or container.
        print(f"ssnas finetune: epoch {epoch + 1}/{cfg.finetune.epochs}: train loss {loss:.4f}, val {metric} "
              f"{val[metric]:.4f} (best {best_value:.4f} at epoch {best_epoch + 1}), "
              f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        if checkpoints is not None:
            save_checkpoint(checkpoints, {"engine": engine.state_dict(), "best_state": best_state,
                                          "best_value": best_value, "best_epoch": best_epoch})
        if on_epoch_end is not None:
            on_epoch_end(epoch, float(val[metric]))
    engine.model.load_state_dict(best_state)
    return best_state, best_epoch


def apply_posthoc(cfg: RunConfig, setup: FinetuneSetup, metric: str, val_logits: torch.Tensor) -> float | None:
    """Set the engine's post-hoc logit offset from ``--tau-posthoc`` (fitted on ``val_logits``, the best model's
    plain val logits, for auto); returns tau. None when post-hoc adjustment is off (``none``).
    """
    if cfg.finetune.tau_posthoc == "none":
        return None
    engine, ds = setup.engine, setup.dataset
    multilabel = ds.is_multilabel
    term = prior_term(class_prior(setup.train_counts, len(engine.data.x_train), multilabel), multilabel)
    tau = cfg.finetune.posthoc_tau()
    if tau is None:
        tau, _ = fit_tau(engine.data.y_val.cpu().numpy(), val_logits.cpu().numpy(), term, ds.task, metric,
                         setup.train_counts)
        if fit_metric(metric, ds.task) != metric:
            print(f"ssnas finetune: post-hoc tau {tau:g} fitted on val {fit_metric(metric, ds.task)} (the val metric "
                  f"{metric} ranks images, and an offset per class does not change that)", file=sys.stderr)
    engine.posthoc_offset = torch.tensor(tau * term, dtype=torch.float32, device=setup.device)
    return tau


def _metrics(setup: FinetuneSetup, split: str, logits: torch.Tensor, posthoc: bool = True
             ) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Metrics of ``split`` from its logits (computed once, scored with and without the post-hoc offset)."""
    y_true = getattr(setup.engine.data, f"y_{split}").cpu().numpy()
    y_score = setup.engine.scores(logits, posthoc)
    return classification_metrics(y_true, y_score, setup.dataset.task, setup.train_counts), y_true, y_score


def _named(metrics: dict[str, float], class_names: tuple[str, ...]) -> dict[str, float]:
    """``error/3`` -> ``error/<class name>`` for the MLflow contract."""
    from ssnas_core.tracking.mlflow_adapter import metric_key

    out = {}
    for k, v in metrics.items():
        head, _, idx = k.rpartition("/")
        out[metric_key(f"{head}/{class_names[int(idx)]}") if idx.isdigit() else k] = v
    return out


def run_finetune(overrides: dict[str, Any], search_run: str | None = None, genotype_file: str | None = None,
                 weights_file: str | None = None, width: int | None = None, cells: int | None = None,
                 tracker: Tracker | None = None) -> FinetuneResult:
    """Fine-tune, evaluate on test, log and register (to MLflow, or to ``tracker`` when given)."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg, setup, genotype, params = prepare(overrides, search_run, genotype_file, weights_file, width, cells,
                                               Path(tmp))
    dataset = setup.dataset
    method = _method_from_params(params)
    tags = {"ssnas.stage": "finetune", "ssnas.method": method, "ssnas.dataset": dataset.name,
            "ssnas.imbalance_factor": str(cfg.data.imbalance_factor), "ssnas.search_run_id": search_run or "",
            "ssnas.loss": cfg.finetune.loss, "ssnas.config_sha": config_sha(cfg, FINETUNE_SECTIONS)}
    tags.update({k: params[k] for k in SEARCH_KEYS if k in params})
    opened, run_id = open_tracker(cfg, resolve_experiment(cfg, dataset.name), tags, None,
                                  run_name("finetune", f"{method}-{cfg.finetune.loss}", cfg, dataset.name), tracker)
    return _finetune_run(cfg, setup, genotype, opened, run_id)


def _method_from_params(params: dict[str, str]) -> str:
    if not params:
        return "genotype"
    relax = "fairdarts" if params.get("search.relaxation", "sigmoid") == "sigmoid" else "darts"
    ssl = {"barlow-twins": "bt", "simclr": "simclr", "ce": "ce"}.get(params.get("search.ssl", ""), "bt")
    return f"{relax}-{ssl}"


def run_baseline(overrides: dict[str, Any], model_name: str, tracker: Tracker | None = None) -> FinetuneResult:
    """Train a baseline network on the fine-tune engine (tracked to MLflow, or to ``tracker`` when given)."""
    cfg = with_overrides(RunConfig(), overrides)
    dataset = load_data(cfg)
    model = build_baseline(model_name, dataset, seed=cfg.seed)
    setup = build_finetune(cfg, model, dataset, [])
    tags = {"ssnas.stage": "baseline", "ssnas.method": f"{model_name}-{cfg.finetune.loss}",
            "ssnas.dataset": dataset.name, "ssnas.imbalance_factor": str(cfg.data.imbalance_factor),
            "ssnas.loss": cfg.finetune.loss, "ssnas.config_sha": config_sha(cfg, FINETUNE_SECTIONS)}
    opened, run_id = open_tracker(cfg, resolve_experiment(cfg, dataset.name), tags, None,
                                  run_name("baseline", f"{model_name}-{cfg.finetune.loss}", cfg, dataset.name), tracker)
    return _finetune_run(cfg, setup, None, opened, run_id)


@dataclass
class FinetuneResult:
    """What a fine-tune produced: its run, the best val metric and the test metrics."""

    run_id: str
    metric: str
    val: float
    test: dict[str, float]


def _finetune_run(cfg: RunConfig, setup: FinetuneSetup, genotype: Genotype | None, tracker: Tracker,
                  run_id: str, on_epoch_end: EpochHook | None = None, checkpoints: Path | None = None,
                  register: bool = True) -> FinetuneResult:
    dataset, engine = setup.dataset, setup.engine
    run_dir = Path(cfg.tracking.work_dir) / run_id / "artifacts"
    run_dir.mkdir(parents=True, exist_ok=True)
    metric = val_metric_name(cfg, dataset.task)
    with ending(tracker) as outcome:
        tracker.set_tags({"ssnas.device": str(setup.device)})  # the device actually used, not "auto"
        tracker.log_params(shareable(flatten(cfg, sections=FINETUNE_SECTIONS)))
        tracker.log_inputs(setup.inputs)
        n_params = count_parameters(engine.model)
        if genotype is not None:
            (run_dir / "genotype.json").write_text(genotype.to_json())
            (run_dir / "inherited_tensors.txt").write_text("\n".join(setup.inherited) + "\n")
            tracker.log_artifact(run_dir / "genotype.json")
            tracker.log_artifact(run_dir / "inherited_tensors.txt")
        tracker.set_tags({"ssnas.n_params": str(n_params), "ssnas.val_metric": metric,
                          "ssnas.inherited": f"{len(setup.inherited)} of {len(engine.model.state_dict())} tensors"})
        tracker.log_metrics({"n_params": float(n_params), "n_inherited_tensors": float(len(setup.inherited))}, 0)
        print(f"ssnas finetune: run {run_id} on {setup.device}, {dataset.name}, {n_params} parameters, "
              f"{len(setup.inherited)} tensors inherited", file=sys.stderr)
        _, best_epoch = train(cfg, setup, tracker, metric, on_epoch_end, checkpoints)
        raw: dict[str, float] = {}
        val_logits, test_logits = engine.logits(engine.data.x_val), engine.logits(engine.data.x_test)
        tau = apply_posthoc(cfg, setup, metric, val_logits)
        if tau is not None:  # the plain model's test figures too, as test_raw/*: the same run serves both columns
            plain = _metrics(setup, "test", test_logits, posthoc=False)[0]
            raw = {f"test_raw/{k}": v for k, v in plain.items() if "/" not in k}
            raw["finetune/tau_posthoc"] = tau
            print(f"ssnas finetune: post-hoc logit adjustment tau {tau:g} ({cfg.finetune.tau_posthoc})",
                  file=sys.stderr)
        val = _metrics(setup, "val", val_logits)[0]
        test, y_true, y_score = _metrics(setup, "test", test_logits)
        final = {**{f"val/{k}": v for k, v in val.items()}, **{f"test/{k}": v for k, v in test.items()},
                 "best_epoch": float(best_epoch), **raw}
        tracker.log_metrics(_named(final, dataset.class_names), step=cfg.finetune.epochs)
        files = write_outputs(run_dir / "test", dataset.slug, dataset.size, "test", y_true, y_score, dataset.task,
                              dataset.class_names, setup.train_counts, test, run_id, tracker.wants_artifacts)
        for path in files:
            tracker.log_artifact(path, "test")
        store = getattr(tracker, "tracking_uri", None)  # an MLflow run (the API's tracker may name another store)
        if cfg.tracking.enabled and store:  # log the model into the run's own store
            _register(cfg, setup, tracker, store, run_id, run_dir, metric, val[metric],
                      register=register and genotype is not None)
        outcome.status = "FINISHED"
        # balanced accuracy too: on an imbalanced test set, ACC alone does not tell a one-class classifier apart
        balanced = f" balanced accuracy {test['balanced_acc']:.4f}" if "balanced_acc" in test else ""
        print(f"ssnas finetune: test ACC {test['acc']:.4f} AUC {test['auc']:.4f}{balanced} (best val {metric} at "
              f"epoch {best_epoch + 1} of {cfg.finetune.epochs})", file=sys.stderr)
        return FinetuneResult(run_id, metric, float(val[metric]), test)


def _register(cfg: RunConfig, setup: FinetuneSetup, tracker: Tracker, store: str, run_id: str, run_dir: Path,
              metric: str, value: float, register: bool) -> None:
    """Log the model to the run's store ``store``; register it there (searched architectures only, not baselines)."""
    from ssnas_core.tracking.mlflow_registry import log_pytorch_model, register_model

    views = setup.views  # the normalisation training and evaluation used
    offset = setup.engine.posthoc_offset
    serving = ServingModel(copy.deepcopy(setup.engine.model).float().to(memory_format=torch.contiguous_format),
                           views.mean, views.std, setup.dataset.is_multilabel,
                           None if offset is None else offset.cpu().tolist())
    example = setup.dataset.test.images[:2].float().numpy()
    ds = setup.dataset
    portable = write_portable(serving, run_dir / "portable", {
        "dataset": ds.name, "task": ds.task, "class_names": list(ds.class_names), "in_channels": ds.n_channels,
        "n_classes": ds.n_classes, "image_size": ds.size})
    extra = [run_dir / "genotype.json", *portable] if register else portable
    from ssnas_core.tracking.mlflow_adapter import get_run_info

    run_tags = get_run_info(store, run_id)["tags"]
    method = run_tags.get("ssnas.method", "?")
    info = {"ssnas.dataset": ds.name, "ssnas.method": method, "ssnas.loss": cfg.finetune.loss,
            "ssnas.imbalance_factor": f"{cfg.data.imbalance_factor:g}", "ssnas.seed": str(cfg.seed),
            f"ssnas.val_{metric}": f"{value:.6g}"}
    if (run_dir / "genotype.json").exists():
        info["ssnas.genotype"] = Genotype.from_json((run_dir / "genotype.json").read_text()).describe()
        info["ssnas.search_run_id"] = run_tags.get("ssnas.search_run_id", "")
        info["ssnas.fallback_nodes"] = run_tags.get(FALLBACK_KEY, "?")
    logged = log_pytorch_model(store, run_id, serving, example, extra, tags=info,
                               step=cfg.finetune.epochs)
    if not register:
        return
    name = f"ssnas-{setup.dataset.slug}"
    version, champion = register_model(
        store, name, run_id, f"val/{metric}", float(value),
        description=(f"{method} fine-tuned with {cfg.finetune.loss} on {ds.name} (imbalance factor "
                     f"{cfg.data.imbalance_factor:g}, seed {cfg.seed}): val {metric} {value:.4f}. Load without "
                     "unpickling: ssnas_core.finetune.portable.load_model(<download folder>)."),
        tags=info, model_id=logged.model_id,
        model_tags={"ssnas.dataset": ds.name, "ssnas.task": ds.task, "ssnas.val_metric": f"val/{metric}",
                    "ssnas.classes": ",".join(ds.class_names)},
        model_description=(f"Architectures searched by ssnas and fine-tuned on {ds.name}; the alias 'champion' "
                           "is the version with the best val metric. Input: float32 pixels 0-255 (B, C, H, W); "
                           "output: probabilities (B, K)."))
    tracker.set_tags({"ssnas.registered_model": f"{name}/{version}", "ssnas.champion": str(champion)})
    print(f"ssnas finetune: registered {name} version {version}" + (" (new champion)" if champion else ""),
          file=sys.stderr)
