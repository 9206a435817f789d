"""argparse flags generated from the config dataclasses.

Every field is ``--<section>.<name>`` (underscores written as dashes), and the
everyday ones also have a short name (``SHORT_FLAGS``). Defaults are
suppressed in the namespace so the caller knows which flags were given.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ssnas_core.config import RunConfig, load_config_file

SHORT_FLAGS = {
    "data.dataset": "--dataset", "data.data_root": "--data-root", "data.imbalance_factor": "--imbalance-factor",
    "data.limit_train": "--limit-train", "data.size": "--size", "data.download": "--download",
    "search.epochs": "--epochs", "search.batch_size": "--batch-size", "search.width": "--width",
    "search.cells": "--cells", "search.nodes": "--nodes", "search.relaxation": "--relaxation",
    "search.ssl": "--ssl", "search.lambda_bt": "--lambda-bt", "search.w01": "--w01",
    "search.arch_order": "--arch-order", "search.amp": "--amp", "search.channels_last": "--channels-last",
    "seed": "--seed", "device": "--device", "tracking.experiment": "--experiment",
    "tracking.tracking_uri": "--tracking-uri", "tracking.work_dir": "--work-dir",
    # a parser holds either the search or the finetune section, so short names can repeat across them
    "finetune.epochs": "--epochs", "finetune.batch_size": "--batch-size", "finetune.loss": "--loss",
    "finetune.gamma": "--gamma", "finetune.tau": "--tau", "finetune.tau_posthoc": "--tau-posthoc",
    "finetune.lr": "--lr", "finetune.inherit": "--inherit",
    "finetune.focal_alpha": "--focal-alpha", "finetune.amp": "--amp", "finetune.channels_last": "--channels-last",
}


def _long_name(key: str) -> str:
    return "--" + key.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, sections: tuple[str, ...],
                     long_only: tuple[str, ...] = ()) -> None:
    """Add one flag per config field of the given sections (``""`` for top-level fields).

    Sections in ``long_only`` get only their ``--section.name`` flags (their short names would clash).
    """
    root = RunConfig()
    for top in dataclasses.fields(root):
        value = getattr(root, top.name)
        if dataclasses.is_dataclass(value):
            if top.name not in sections:
                continue
            group = parser.add_argument_group(f"{top.name} options")
            for f in dataclasses.fields(value):
                _add(group, f"{top.name}.{f.name}", f, getattr(value, f.name), short=top.name not in long_only)
        elif "" in sections:
            _add(parser, top.name, top, value)
    parser.add_argument("--config", dest="config_file", default=None, metavar="FILE",
                        help="a YAML or TOML file of options: keys are the dotted flags (search.epochs: 50, or "
                             "[search] tables in TOML; dashes or underscores); flags on the command line win")
    if "tracking" in sections:
        parser.add_argument("--no-tracking", dest="tracking.enabled", action="store_false", default=argparse.SUPPRESS,
                            help="do not record the run in MLflow (checkpoints still go to the work dir)")


def _add(parser: Any, key: str, f: dataclasses.Field[Any], default: Any, short: bool = True) -> None:
    names = list(dict.fromkeys(n for n in (SHORT_FLAGS.get(key) if short else None, _long_name(key)) if n))
    help_text = str(f.metadata.get("help", ""))
    if default != "":
        help_text += f" (default: {default})"
    kwargs: dict[str, Any] = {"dest": key, "default": argparse.SUPPRESS, "help": help_text}
    if isinstance(default, bool):
        kwargs["action"] = argparse.BooleanOptionalAction
    else:
        kwargs["type"] = type(default)
        kwargs["metavar"] = type(default).__name__.upper()
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
            kwargs.pop("metavar")
    parser.add_argument(*names, **kwargs)


def given_overrides(ns: argparse.Namespace) -> dict[str, Any]:
    """The config keys the user gave explicitly (dotted): ``--config FILE`` first, the command line over it.

    Raises:
        ConfigError: the file cannot be read or parsed, or holds a key that is no option.
    """
    given = {k: v for k, v in vars(ns).items() if "." in k or k in ("seed", "device")}
    path = getattr(ns, "config_file", None)
    return {**load_config_file(path), **given} if path else given
