"""Optuna studies over ssnas runs: one module per study (``tune_finetune``, ``tune_search``, ``compare_methods``).

Each study module defines ``DESCRIPTION``, ``DEFAULT_TRIALS``, ``DIRECTION``,
``suggest(trial, ctx) -> dict`` (dotted config overrides) and
``run_trial(overrides, ctx, trial_run) -> float``. ``runner.py`` owns storage,
workers, pruning, retries and the MLflow parent/trial runs. Only this package
imports optuna.
"""

from __future__ import annotations

import importlib
from types import ModuleType

STUDIES = ("tune_finetune", "tune_search", "compare_methods")


def load_study_module(name: str) -> ModuleType:
    """The module of study ``name``; unknown names raise ``ConfigError`` listing the known ones."""
    from ssnas_core.errors import ConfigError

    if name not in STUDIES:
        raise ConfigError(f"unknown study {name!r}: choose one of {', '.join(STUDIES)}")
    return importlib.import_module(f"studies.{name}")
