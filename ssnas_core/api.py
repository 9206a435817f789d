"""ssnas from Python (notebooks, scripts): search, fine-tune, baseline and studies, the layer the CLI is over
(``ssnas_core.workflows`` composes the runs; the CLI only parses flags into these calls).

Each function takes a configuration and keyword overrides, an optional ``Tracker`` and returns a result object::

    from ssnas_core import api
    from ssnas_core.tracking.base import InMemoryTracker

    tracker = InMemoryTracker()                       # or NullTracker(), or None: MLflow as configured
    found = api.search({"data.dataset": "pneumoniamnist", "data.data_root": "../shared/data/medmnist"},
                       tracker=tracker, epochs=2, limit_train=512, imbalance_factor=10)
    print(found.genotype.describe(), found.fallback_nodes, tracker.metrics["search/decided/normal"][-1])
    tuned = api.finetune(genotype=found.genotype_file, weights=found.weights_file, epochs=4, loss="ce")
    print(tuned.test["balanced_acc"], tuned.run_id)

Configuration, in increasing precedence: ``config`` (a ``RunConfig``, a mapping of the CLI's dotted option
keys such as ``{"search.epochs": 50}``, or the path of a YAML/TOML file as ``--config`` takes), then keyword
overrides. A keyword is a dotted key with ``__`` for the dot (``search__arch_lr=3e-3``) or an option's plain name
when only one section of the command has it (``epochs`` is ``search.epochs`` in ``search`` and
``finetune.epochs`` in ``finetune``; ``dataset`` is ``data.dataset``). Unknown keys raise ``ConfigError``.

``tracker``: ``None`` tracks to MLflow as the configuration says (``tracking.enabled``, ``tracking.tracking_uri``;
models are logged and registered), any other ``Tracker`` receives the run's params, metrics, tags, dataset inputs
and artifacts instead (MLflow models are then neither logged nor registered). Studies keep one MLflow run per
trial, so ``study`` always tracks to MLflow.

Errors are ``ssnas_core.errors.SsnasError`` subclasses raised before any run opens (bad input), or
``DivergenceError`` for a run that diverged; the CLI turns them into one line and exit status 2 or 1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ssnas_core.config import RunConfig, flatten, load_config_file
from ssnas_core.errors import ConfigError
from ssnas_core.search_space.genotype import Genotype
from ssnas_core.tracking.base import Tracker

Config = RunConfig | Mapping[str, Any] | str | Path | None

SECTIONS = {"search": ("data", "search", "tracking"), "finetune": ("data", "finetune", "tracking"),
            "baseline": ("data", "finetune", "tracking"), "study": ("data", "search", "finetune", "tracking")}


def options(config: Config = None, command: str = "search", **overrides: Any) -> dict[str, Any]:
    """The dotted option keys ``config`` and ``overrides`` give for ``command`` (see the module's docstring).

    Raises:
        ConfigError: an unknown key, an ambiguous plain name, or a config file that cannot be read.
    """
    if config is None:
        given: dict[str, Any] = {}
    elif isinstance(config, RunConfig):
        defaults = flatten(RunConfig())
        given = {k: v for k, v in flatten(config).items() if defaults[k] != v}
    elif isinstance(config, (str, Path)):
        given = load_config_file(str(config))
    elif isinstance(config, Mapping):
        given = dict(config)
    else:
        raise ConfigError(f"config must be a RunConfig, a mapping of option keys or a file path, not "
                          f"{type(config).__name__}")
    known = flatten(RunConfig())
    sections = SECTIONS[command]
    for name, value in overrides.items():
        key = name.replace("__", ".")
        if key not in known:
            owners = [f"{s}.{key}" for s in sections if f"{s}.{key}" in known]
            if len(owners) != 1:
                raise ConfigError(f"unknown option {name!r} for {command}: " + (
                    f"it could be {' or '.join(owners)}; write it with __ for the dot" if owners else
                    "write a dotted key with __ for the dot, e.g. search__epochs=50"))
            key = owners[0]
        given[key] = value
    unknown = sorted(k for k in given if k not in known)
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown}; keys are the CLI's dotted flags, e.g. search.epochs")
    return given


@dataclass
class SearchResult:
    """A finished search.

    Attributes:
        run_id: the MLflow run id (or the run folder's id when another tracker was given).
        genotype: the derived architecture.
        artifacts: the run's artifacts folder (``genotype.json``, ``supernet.pt``, ``search_summary.json``, plots).
        summary: ``search_summary.json``: epochs run, fallback nodes and decided fraction per cell.
    """

    run_id: str
    genotype: Genotype
    artifacts: Path
    summary: dict[str, Any]

    @property
    def genotype_file(self) -> Path:
        return self.artifacts / "genotype.json"

    @property
    def weights_file(self) -> Path:
        """The supernet's weights, for ``finetune(weights=...)``."""
        return self.artifacts / "supernet.pt"

    @property
    def fallback_nodes(self) -> int:
        """Nodes that took the fallback gene; 0 means the search converged."""
        return int(sum(self.summary.get("fallback_nodes", {}).values()))


def search(config: Config = None, *, tracker: Tracker | None = None, resume: str | None = None,
           **overrides: Any) -> SearchResult:
    """Search a cell architecture without labels (``ssnas search``); see the module's docstring."""
    from ssnas_core.config import with_overrides
    from ssnas_core.workflows.search import run_search

    given = options(config, "search", **overrides)
    if resume and tracker is not None:
        raise ConfigError("resume continues the run's MLflow run: leave tracker=None to resume")
    run_id = run_search(given, resume=resume, tracker=tracker)
    cfg = with_overrides(RunConfig(), given)
    artifacts = Path(cfg.tracking.work_dir) / run_id / "artifacts"
    summary_file = artifacts / "search_summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    return SearchResult(run_id, Genotype.from_json((artifacts / "genotype.json").read_text()), artifacts, summary)


def finetune(config: Config = None, *, search_run: str | None = None, genotype: str | Path | None = None,
             weights: str | Path | None = None, width: int | None = None, cells: int | None = None,
             tracker: Tracker | None = None, **overrides: Any) -> Any:
    """Fine-tune a searched architecture with labels (``ssnas finetune``); returns a ``FinetuneResult``
    (``run_id``, ``metric``, best ``val`` value, ``test`` metrics).

    Args:
        search_run: the MLflow search run to take genotype and weights from, or
        genotype: a ``genotype.json`` (``SearchResult.genotype_file``), with optional
        weights: a ``supernet.pt`` to inherit from (``SearchResult.weights_file``).
    """
    from ssnas_core.workflows.finetune import run_finetune

    given = options(config, "finetune", **overrides)
    return run_finetune(given, search_run, str(genotype) if genotype else None, str(weights) if weights else None,
                        width, cells, tracker=tracker)


def baseline(model: str, config: Config = None, *, tracker: Tracker | None = None, **overrides: Any) -> Any:
    """Train a baseline (``resnet18``, ``resnet50``, ``resnet32``) on the fine-tune engine (``ssnas baseline``);
    returns a ``FinetuneResult``."""
    from ssnas_core.workflows.finetune import run_baseline

    return run_baseline(options(config, "baseline", **overrides), model, tracker=tracker)


@dataclass
class StudyResult:
    """A study after this call: its name, storage, and its best trial so far (None when none finished)."""

    study: str
    storage: str
    best_value: float | None
    best_params: dict[str, Any]
    n_complete: int


def study(kind: str, config: Config = None, *, storage: str, n_trials: int | None = None,
          timeout: float | None = None, study_name: str | None = None, create: bool = True, sampler: str = "tpe",
          pruner: str = "median", seeds: int = 3, search_run: str | None = None, genotype: str | None = None,
          weights: str | None = None, width: int | None = None, cells: int | None = None, heartbeat: int = 10,
          **overrides: Any) -> StudyResult:
    """Create/resume (``create=True``, ``ssnas study run``) or join (``ssnas study worker``) an Optuna study of
    ``kind`` (``tune_finetune``, ``tune_search`` or ``compare_methods``, as ``ssnas study --help`` describes) on
    ``storage`` (an Optuna RDB URL); trials are MLflow runs as the configuration's tracking says. In a study, plain
    names that both search and fine-tune have are ambiguous: write ``finetune__epochs=...``."""
    from ssnas_core.workflows.study import run_study_workflow

    name = run_study_workflow(kind, options(config, "study", **overrides), storage=storage, create=create,
                              study_name=study_name, n_trials=n_trials, timeout=timeout, sampler=sampler,
                              pruner=pruner, seeds=seeds, search_run=search_run, genotype=genotype, weights=weights,
                              width=width, cells=cells, heartbeat=heartbeat)
    return _study_result(name, storage)


def _study_result(name: str, storage: str) -> StudyResult:
    from studies.runner import best_so_far  # studies/ owns optuna

    value, params, n_complete = best_so_far(name, storage)
    return StudyResult(name, storage.split("@")[-1], value, params, n_complete)


__all__ = ["Config", "SearchResult", "StudyResult", "baseline", "finetune", "options", "search", "study"]
