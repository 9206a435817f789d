"""THE configuration: frozen nested dataclasses, flattening, overrides, argparse flags.

Every field carries its help text in ``metadata``; ``cli.py`` turns the fields
into ``--section.name`` flags (plus the short everyday names in ``SHORT_FLAGS``),
``flatten`` gives exactly the dict logged as MLflow params, and
``with_overrides`` applies dotted keys (as Optuna studies return them),
refusing unknown keys and wrong types.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, TypeVar

from ssnas_core.errors import ConfigError, read_text

T = TypeVar("T")


LOSSES = ("ce", "ce-la", "focal", "focal-la", "cb-focal", "cb-focal-softmax", "ldam-drw")


def _f(default: Any, help: str, choices: tuple[Any, ...] | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class DataConfig:
    """Which images, and how the training set is made imbalanced or smaller."""

    dataset: str = _f(
        "pneumoniamnist",
        "dataset: a 2D MedMNIST flag (pneumoniamnist, chestmnist, ...), cifar10, cifar100, "
        "imagefolder:<path> or synthetic",
    )
    data_root: str = _f("", "folder holding the dataset files (default: $SSNAS_DATA_ROOT, else medmnist's)")
    size: int = _f(28, "image size in pixels (MedMNIST: 28, 64, 128 or 224)")
    imbalance_factor: float = _f(
        1.0, "long-tail the training set: largest/smallest class count (e.g. 10; 1 keeps it as is)"
    )
    limit_train: int = _f(0, "use only N training images (stratified), for quick runs; 0 uses all")
    download: bool = _f(False, "download the dataset when it is missing (needs network access)")
    strict_md5: bool = _f(False, "treat an MD5 mismatch of a MedMNIST file as an error instead of a warning")

    def __post_init__(self) -> None:
        if not math.isfinite(self.imbalance_factor) or self.imbalance_factor < 1:
            raise ConfigError(
                f"imbalance factor {self.imbalance_factor} is invalid: it is the largest/smallest class "
                "count and must be a finite number >= 1 (e.g. 10, not 0.1)"
            )
        if self.limit_train < 0:
            raise ConfigError(f"--limit-train {self.limit_train} is negative: give a count of images, or 0 for all")
        if self.size < 8:
            raise ConfigError(f"--data.size {self.size} is too small: use 28 or more")


@dataclass(frozen=True)
class SearchConfig:
    """Architecture search: supernet, relaxation, self-supervised loss, optimisers."""

    epochs: int = _f(100, "search epochs (paper: 100): the length of the weights' cosine schedule")
    stop_after: int = _f(0, "run only the first N epochs of the --epochs schedule, then derive the genotype and "
                         "finish (0: all), e.g. to stop a 100-epoch schedule once the search converged; "
                         "--resume of an interrupted search may change it")
    batch_size: int = _f(32, "images per step in each half of the bi-level split (paper: 32)")
    width: int = _f(16, "initial channels C of the supernet")
    cells: int = _f(3, "cells in the supernet (paper: 3); reduction cells at 1/3 and 2/3 of the depth")
    nodes: int = _f(4, "intermediate nodes per cell (paper: 4)")
    relaxation: str = _f(
        "sigmoid", "sigmoid: FairDARTS (independent sigmoids + zero-one loss); softmax: DARTS",
        ("sigmoid", "softmax"),
    )
    ssl: str = _f(
        "barlow-twins", "search loss: barlow-twins, simclr (NT-Xent, as SSNAS) or ce (supervised, uses labels)",
        ("barlow-twins", "simclr", "ce"),
    )
    lambda_bt: float = _f(0.0051, "Barlow Twins weight lambda of the off-diagonal term")
    projector: str = _f("512-512", "projector hidden-output sizes, e.g. 512-512 (Barlow Twins and SimCLR)")
    temperature: float = _f(0.5, "NT-Xent temperature (simclr)")
    w01: float = _f(10.0, "weight of the FairDARTS zero-one loss (sigmoid relaxation only; 10 as in "
                    "xiaomi-automl/FairDARTS fairdarts/train_search.py, set there against cross-entropy)")
    threshold: float = _f(0.85, "FairDARTS genotype threshold on sigmoid weights (fairdarts/utils.py parse, "
                          "op_threshold); a node with no operation at it takes a fallback gene and is counted")
    lr: float = _f(0.025, "SGD learning rate of the network weights (cosine schedule)")
    lr_min: float = _f(0.001, "final learning rate of the cosine schedule")
    momentum: float = _f(0.9, "SGD momentum")
    weight_decay: float = _f(3e-4, "SGD weight decay")
    arch_lr: float = _f(
        0.0, "Adam learning rate of the architecture weights; 0 takes the relaxation's reference: sigmoid 3e-3 "
        "(FairDARTS, xiaomi-automl/FairDARTS fairdarts/train_search.py --arch_learning_rate), softmax 3e-4 "
        "(DARTS, quark0/darts cnn/train_search.py); the resolved value is logged",
    )
    arch_betas: str = _f(
        "auto", "Adam betas of the architecture weights as B1,B2; auto takes the relaxation's reference: sigmoid "
        "0.9,0.999 (FairDARTS fairdarts/architect.py, torch's default), softmax 0.5,0.999 (DARTS cnn/architect.py)",
    )
    arch_weight_decay: float = _f(
        1e-3, "Adam weight decay of the architecture weights (1e-3 in both FairDARTS and DARTS train_search.py)"
    )
    ssl_arch_scale: str = _f(
        "auto", "factor on the SSL loss in the alpha objective only, so the zero-one loss keeps the share of "
        "the alpha gradient it has against cross-entropy in FairDARTS: auto (barlow-twins: 1/D, the loss per "
        "projector dimension; simclr and ce: 1) or a number; Adam is scale-free, so this sets the balance, "
        "not the step size",
    )
    arch_order: int = _f(1, "1: first-order architecture gradient; 2: second-order (unrolled, DARTS)", (1, 2))
    grad_clip: float = _f(5.0, "clip the weights' gradient norm to this value (0: off)")
    aug_strength: float = _f(
        1.0, "strength of the two-view augmentation: colour jitter and blur (0 keeps only random crop and flip)"
    )
    amp: str = _f("none", "mixed precision: none or bf16 autocast", ("none", "bf16"))
    channels_last: str = _f(
        "auto", "channels_last memory format: auto (on for the CPU, where oneDNN is 2x faster with it; off for "
        "CUDA, where it was slower in eager mode), on or off", ("auto", "on", "off"),
    )

    def __post_init__(self) -> None:
        positive = {"epochs": self.epochs, "width": self.width, "cells": self.cells, "nodes": self.nodes}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"--{name} {value} is invalid: it must be at least 1")
        if self.stop_after < 0:
            raise ConfigError(f"--search.stop-after {self.stop_after} is invalid: give epochs, or 0 for all")
        if self.stop_after > self.epochs:
            raise ConfigError(f"--search.stop-after {self.stop_after} is more than --epochs {self.epochs}: give at "
                              "most the schedule's epochs (the search would run them all), or 0 for all")
        if self.batch_size < 2:
            raise ConfigError(
                f"--batch-size {self.batch_size} is invalid: batch statistics need at least 2 images per step"
            )
        for flag, value in (("--lambda-bt", self.lambda_bt), ("--w01", self.w01)):
            if value < 0:
                raise ConfigError(f"{flag} {value} is negative: give a weight >= 0 (0 leaves that loss out)")
        if self.temperature <= 0:
            raise ConfigError(f"--search.temperature {self.temperature} is invalid: give a temperature > 0")
        if not 0 < self.threshold < 1:
            raise ConfigError(f"--search.threshold {self.threshold} must lie in (0, 1)")
        projector_sizes(self.projector)
        for name in ("lr", "lr_min", "momentum", "weight_decay", "arch_lr", "arch_weight_decay", "lambda_bt",
                     "w01", "temperature", "grad_clip", "aug_strength"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"--search.{name.replace('_', '-')} {value} is invalid: give a finite number >= 0")
        self.arch_adam_betas()
        self.arch_ssl_scale()

    def arch_adam_lr(self) -> float:
        """The alphas' Adam learning rate: ``arch_lr``, or the relaxation's reference when it is 0."""
        if self.arch_lr > 0:
            return self.arch_lr
        return 3e-3 if self.relaxation == "sigmoid" else 3e-4

    def arch_adam_betas(self) -> tuple[float, float]:
        """The alphas' Adam betas: ``arch_betas``, or the relaxation's reference for ``auto``."""
        if self.arch_betas == "auto":
            return (0.9, 0.999) if self.relaxation == "sigmoid" else (0.5, 0.999)
        try:
            b1, b2 = (float(part) for part in self.arch_betas.split(","))
        except ValueError:
            b1 = b2 = -1.0
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ConfigError(f"--search.arch-betas {self.arch_betas!r} is invalid: write two numbers in [0, 1) "
                              "as B1,B2 (e.g. 0.9,0.999) or auto")
        return b1, b2

    def arch_ssl_scale(self) -> float:
        """The factor on the SSL loss in the alpha objective (see ``ssl_arch_scale``)."""
        if self.ssl_arch_scale == "auto":
            return 1.0 / projector_sizes(self.projector)[-1] if self.ssl == "barlow-twins" else 1.0
        try:
            value = float(self.ssl_arch_scale)
        except ValueError:
            value = -1.0
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"--search.ssl-arch-scale {self.ssl_arch_scale!r} is invalid: give auto or a "
                              "finite number > 0")
        return value

    def resolved(self) -> SearchConfig:
        """A copy whose ``auto``/0 architecture settings are the concrete values used (what is logged)."""
        b1, b2 = self.arch_adam_betas()
        return dataclasses.replace(self, arch_lr=self.arch_adam_lr(), arch_betas=f"{b1:g},{b2:g}",
                                   ssl_arch_scale=f"{self.arch_ssl_scale():.6g}")


@dataclass(frozen=True)
class FinetuneConfig:
    """Supervised fine-tuning of a derived network (or a baseline) on the labels."""

    epochs: int = _f(600, "fine-tuning epochs (paper: 600)")
    batch_size: int = _f(32, "images per step")
    loss: str = _f(
        "focal-la", "ce; ce-la (cross-entropy on logit-adjusted logits, Menon et al.'s loss for balanced error); "
        "focal; focal-la (focal on logit-adjusted logits, the paper's); cb-focal (class-balanced focal, "
        "sigmoid form, Cui et al.); cb-focal-softmax (its softmax form); ldam-drw (on a normalised head, "
        "kaidic/LDAM-DRW)", LOSSES,
    )
    gamma: float = _f(2.0, "focal loss gamma (0 gives cross-entropy)")
    tau: float = _f(1.0, "logit adjustment tau (ce-la, focal-la): f_y(x) + tau * log(prior_y) in training; "
                    "single-label tasks (1: Menon et al., google-research/logit_adj)")
    tau_multilabel: float = _f(
        0.0, "logit adjustment tau of multi-label tasks, per label: f_l(x) + tau * log(pi_l / (1 - pi_l)). "
        "0 by default: at tau 1 a label of prior 0.002 is shifted by 6.2 nats and predicted positive "
        "for nearly every image")
    tau_posthoc: str = _f(
        "none", "post-hoc logit adjustment at prediction time, f(x) - tau * log(prior): none, auto (tau "
        "fitted on val over -2..2, step 0.05, by the val metric; multi-label: only taus that keep every "
        "label's val accuracy at least that of predicting it absent) or a number")
    focal_alpha: str = _f("none", "per-class focal alpha: none, inverse (inverse frequency) or cb "
                          "(effective number, beta 0.9999)", ("none", "inverse", "cb"))
    lr: float = _f(0.025, "SGD learning rate (cosine schedule)")
    lr_min: float = _f(0.0, "final learning rate of the cosine schedule")
    momentum: float = _f(0.9, "SGD momentum")
    weight_decay: float = _f(3e-4, "SGD weight decay")
    grad_clip: float = _f(5.0, "clip the gradient norm to this value (0: off)")
    inherit: bool = _f(True, "start from the searched weights of the chosen operations (--no-inherit: from scratch)")
    aug_strength: float = _f(0.5, "strength of the training augmentation (0: none)")
    val_metric: str = _f("auto", "model selection and champion metric on val: auto (balanced_acc; auc for "
                         "multi-label), acc, auc, balanced_acc or macro_f1",
                         ("auto", "acc", "auc", "balanced_acc", "macro_f1"))
    amp: str = _f("none", "mixed precision: none or bf16 autocast", ("none", "bf16"))
    channels_last: str = _f("auto", "channels_last memory format: auto (on for the CPU), on or off",
                            ("auto", "on", "off"))

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise ConfigError("--finetune.epochs must be >= 1 and --finetune.batch-size >= 2")
        if not math.isfinite(self.gamma) or self.gamma < 0:
            raise ConfigError(f"--gamma {self.gamma} is invalid: the focal loss needs a finite gamma >= 0")
        for name in ("lr", "lr_min", "momentum", "weight_decay", "grad_clip", "aug_strength"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"--finetune.{name.replace('_', '-')} {value} is invalid: give a finite number >= 0")
        for name in ("tau", "tau_multilabel"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"--finetune.{name.replace('_', '-')} {getattr(self, name)} is invalid: give a "
                                  "finite number (0: no logit adjustment)")
        self.posthoc_tau()  # validates

    def posthoc_tau(self) -> float | None:
        """``--tau-posthoc`` as a number, None for auto, or 0.0 for none.

        Raises:
            ConfigError: neither none, auto nor a finite number.
        """
        if self.tau_posthoc in ("none", "auto"):
            return 0.0 if self.tau_posthoc == "none" else None
        try:
            value = float(self.tau_posthoc)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ConfigError(f"--tau-posthoc {self.tau_posthoc!r} is invalid: write none, auto or a finite number")
        return value


@dataclass(frozen=True)
class TrackingConfig:
    """Where runs are recorded."""

    enabled: bool = _f(True, "record the run in MLflow (--no-tracking.enabled: only the local work dir)")
    experiment: str = _f("", "MLflow experiment (default: ssnas-<dataset>)")
    tracking_uri: str = _f("", "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)")
    work_dir: str = _f("ssnas-runs", "local folder for checkpoints and artifacts, one sub-folder per run")


@dataclass(frozen=True)
class RunConfig:
    """Everything one ``ssnas search`` run needs."""

    data: DataConfig = field(default_factory=DataConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    seed: int = _f(0, "random seed: data order, split, augmentation and initialisation")
    device: str = _f("auto", "auto (CUDA when present), cpu, cuda or cuda:N")

    def __post_init__(self) -> None:
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"--seed {self.seed} is invalid: give a whole number from 0 to {2**32 - 1}")


def resolve(cfg: RunConfig) -> RunConfig:
    """``cfg`` with the search's relaxation-dependent defaults made concrete (see ``SearchConfig.resolved``)."""
    return dataclasses.replace(cfg, search=cfg.search.resolved())


# Fields that may change between an interrupted run and its resumption.
RUNTIME_KEYS = frozenset({"device", "tracking.enabled", "tracking.tracking_uri", "tracking.work_dir",
                          "search.stop_after"})


def projector_sizes(spec: str) -> tuple[int, ...]:
    """Parse ``"512-512"`` into ``(512, 512)``.

    Raises:
        ConfigError: when a part is not a positive integer.
    """
    try:
        sizes = tuple(int(part) for part in spec.split("-"))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"projector sizes {spec!r} are invalid: write positive integers joined by '-', e.g. 512-512")
    return sizes


def flatten(cfg: Any, prefix: str = "", sections: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Flatten nested dataclasses into dotted keys: ``{"search.lambda_bt": 0.0051, ...}``.

    Args:
        cfg: a config dataclass.
        prefix: prepended to every key.
        sections: keep only these nested sections (top-level fields are always kept).
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            if sections is None or f.name in sections:
                out.update(flatten(value, prefix=f"{key}."))
        else:
            out[key] = value
    return out


SEARCH_SECTIONS = ("data", "search", "tracking")
FINETUNE_SECTIONS = ("data", "finetune", "tracking")


def redact_uri(uri: str) -> str:
    """``uri`` with the password of its user info shown as ``***`` (database and http URLs alike)."""
    from urllib.parse import urlsplit

    try:
        password = urlsplit(uri).password
    except ValueError:  # not a URL (e.g. a malformed port): nothing to find
        return uri
    return uri.replace(f":{password}@", ":***@", 1) if password else uri


def shareable(flat: dict[str, Any]) -> dict[str, Any]:
    """A flat config fit to be logged, saved in config.json or a checkpoint: no password of a tracking URI."""
    return {k: redact_uri(v) if k == "tracking.tracking_uri" and isinstance(v, str) else v for k, v in flat.items()}


def config_sha(cfg: RunConfig, sections: tuple[str, ...] = SEARCH_SECTIONS) -> str:
    """Short hash of the non-runtime configuration of the given sections."""
    flat = {k: v for k, v in flatten(cfg, sections=sections).items() if k not in RUNTIME_KEYS}
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:12]


def _coerce(key: str, value: Any, default: Any) -> Any:
    kind = type(default)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        return str(value)
    raise ConfigError(f"option {key} got {value!r}: expected a {kind.__name__}")


def with_overrides(cfg: T, overrides: Mapping[str, Any]) -> T:
    """Return a copy of ``cfg`` with dotted-key overrides applied.

    Raises:
        ConfigError: for an unknown key, a value of the wrong type or outside its choices.
    """
    flat = flatten(cfg)
    for key in overrides:
        if key not in flat:
            known = ", ".join(sorted(flat))
            raise ConfigError(f"unknown option {key!r}: known options are {known}")
    return _rebuild(cfg, overrides, "")


def _rebuild(cfg: T, overrides: Mapping[str, Any], prefix: str) -> T:
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):  # type: ignore[arg-type]
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            if any(k.startswith(key + ".") for k in overrides):
                changes[f.name] = _rebuild(value, overrides, key + ".")
        elif key in overrides:
            new = _coerce(key, overrides[key], f.default)
            choices = f.metadata.get("choices")
            if choices and new not in choices:
                raise ConfigError(f"option {key} got {new!r}: choose one of {', '.join(map(str, choices))}")
            changes[f.name] = new
    return dataclasses.replace(cfg, **changes) if changes else cfg  # type: ignore[type-var]


def from_flat(flat: Mapping[str, Any]) -> RunConfig:
    """Rebuild a ``RunConfig`` from ``flatten`` output (e.g. a checkpoint's config)."""
    known = flatten(RunConfig())
    return with_overrides(RunConfig(), {k: v for k, v in flat.items() if k in known})


def diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ between two flat configs, as ``{key: (a, b)}``."""
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def load_config_file(path: str) -> dict[str, Any]:
    """A YAML (.yaml/.yml) or TOML (.toml) file as dotted option keys (nested tables flattened); ``--config`` of
    the CLI and ``config=`` of ``ssnas_core.api``."""
    text = read_text(path, "--config")
    try:
        if path.endswith(".toml"):
            import tomllib

            data: Any = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except Exception as err:  # noqa: BLE001 - both parsers' errors: one line
        raise ConfigError(f"--config {path} is not valid {'TOML' if path.endswith('.toml') else 'YAML'} "
                          f"({' '.join(str(err).split())[:200]})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path} must map option names to values, e.g. 'search.epochs: 50'")

    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            key = f"{prefix}{str(k).replace('-', '_')}"
            out.update(flat(v, key + ".") if isinstance(v, dict) else {key: v})
        return out

    options = flat(data)
    known = flatten(RunConfig())
    unknown = sorted(k for k in options if k not in known)
    if unknown:
        raise ConfigError(f"--config {path}: unknown option(s) {unknown}; keys are the dotted flags, e.g. "
                          "search.epochs, finetune.loss, data.dataset, seed")
    return options
