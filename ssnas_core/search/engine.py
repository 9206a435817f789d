"""The search engine: one epoch = for each step, an alpha update on the alpha half, then a weight update.

Designed so a whole step can later be captured as a CUDA graph (``SearchEngine.captured_step``): static
shapes (drop_last), data and augmentation on the device, the batch read from static device buffers, the
learning rates and Adam's step count in device tensors (``search.optim``), no host synchronisation inside a
step (``tests/test_search_optim.py`` counts them). Per-step losses go to a device buffer read once per
epoch, which is also where the NaN guard looks.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ssnas_core.config import SearchConfig
from ssnas_core.errors import DivergenceError
from ssnas_core.search.architect import Architect, frozen
from ssnas_core.search.objective import SearchObjective
from ssnas_core.search.optim import DeviceAdam, DeviceSGD
from ssnas_core.search.schedule import cosine_lr, epoch_seed
from ssnas_core.search_space.genotype import Genotype, decided_fraction, fallback_nodes
from ssnas_core.search_space.supernet import Supernet

COLUMNS = ("loss_train", "loss_val", "loss_zero_one", "loss_arch", "grad_share_01")


def use_channels_last(setting: str, device: torch.device) -> bool:
    """``auto``: channels_last on the CPU (oneDNN's fast path), contiguous on CUDA."""
    return setting == "on" or (setting == "auto" and device.type == "cpu")


@dataclass
class BilevelData:
    """The two halves of the training set, uint8 images and labels on the training device."""

    x_w: torch.Tensor  # (N_w, C, H, W) uint8: trains the weights
    y_w: torch.Tensor
    x_a: torch.Tensor  # (N_a, C, H, W) uint8: trains the alphas
    y_a: torch.Tensor


@dataclass
class EpochReport:
    """What one epoch produced, on the host."""

    epoch: int
    first_step: int
    losses: dict[str, list[float]]  # per step, COLUMNS order
    lr: float
    arch_weights: dict[str, Any]  # {"normal": (E, O) ndarray, "reduce": ...}
    genotype: Genotype
    seconds: float
    images: int
    extra: dict[str, float] = field(default_factory=dict)


class SearchEngine:
    """Bi-level search of a ``Supernet`` under a ``SearchObjective``.

    Args:
        cfg: search settings.
        objective: supernet + head + loss.
        views: callable ``(x_uint8, generator) -> (v1, v2)`` making two augmented views on the device.
        data: the bi-level halves.
        seed: run seed; data order and augmentation depend only on (seed, epoch).
    """

    def __init__(self, cfg: SearchConfig, objective: SearchObjective,
                 views: Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]],
                 data: BilevelData, seed: int) -> None:
        self.cfg = cfg
        self.objective = objective
        self.supernet: Supernet = objective.supernet  # type: ignore[assignment]
        self.views = views
        self.data = data
        self.seed = seed
        self.device = data.x_w.device
        self.channels_last = use_channels_last(cfg.channels_last, self.device)
        alphas = self.supernet.alphas()
        ids = {id(a) for a in alphas}
        self.weights = [p for p in objective.parameters() if id(p) not in ids]
        # Multi-tensor updates, the learning rate and Adam's step count on the device: no host sync (optim.py).
        self.w_optimizer = DeviceSGD(self.weights, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        # Per relaxation, its reference's settings unless given (SearchConfig.arch_adam_lr/_betas).
        self.a_optimizer = DeviceAdam(alphas, lr=cfg.arch_adam_lr(), betas=cfg.arch_adam_betas(),
                                      weight_decay=cfg.arch_weight_decay)
        w01 = cfg.w01 if self.supernet.relaxation == "sigmoid" else 0.0
        self.architect = Architect(alphas, self.weights, self.a_optimizer, w01, cfg.arch_order,
                                   ssl_scale=cfg.arch_ssl_scale())
        self.steps_per_epoch = min(len(data.x_w), len(data.x_a)) // cfg.batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(f"each half of the training set needs at least one batch of {cfg.batch_size}")
        self.epoch = 0
        self.global_step = 0
        self.alpha_history: list[dict[str, torch.Tensor]] = []
        # The step reads its batch from these (x_w, y_w, x_a, y_a): fixed addresses, as a CUDA graph needs.
        b = cfg.batch_size
        self.static_batch = (data.x_w.new_empty((b, *data.x_w.shape[1:])), data.y_w.new_empty((b, *data.y_w.shape[1:])),
                             data.x_a.new_empty((b, *data.x_a.shape[1:])), data.y_a.new_empty((b, *data.y_a.shape[1:])))
        # One augmentation generator, re-seeded each epoch (the same draws as a fresh one): a CUDA graph registers
        # a generator once (CUDAGraph.register_generator_state), so it must outlive the epoch.
        self.aug_generator = torch.Generator(device=self.device)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.cfg.amp == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _prepare(self, v: torch.Tensor) -> torch.Tensor:
        return v.contiguous(memory_format=torch.channels_last) if self.channels_last else v

    def _batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch, 0))
        perm_w = torch.randperm(len(self.data.x_w), generator=gen).to(self.device)
        perm_a = torch.randperm(len(self.data.x_a), generator=gen).to(self.device)
        b = self.cfg.batch_size
        for s in range(self.steps_per_epoch):
            iw, ia = perm_w[s * b:(s + 1) * b], perm_a[s * b:(s + 1) * b]
            yield self.data.x_w[iw], self.data.y_w[iw], self.data.x_a[ia], self.data.y_a[ia]

    def arch_step(self, vw: tuple[torch.Tensor, ...], va: tuple[torch.Tensor, ...], lr: torch.Tensor
                  ) -> dict[str, torch.Tensor]:
        """Update the alphas on the alpha-half views ``va`` (``vw`` for the second-order term; ``lr``, the
        weight learning rate as a device tensor, is its virtual step)."""
        def val_loss() -> torch.Tensor:
            with self._autocast():
                return self.objective(*va)

        def train_loss() -> torch.Tensor:
            with self._autocast():
                return self.objective(*vw)

        return self.architect.step(val_loss, train_loss, xi=lr)

    def train_step(self, vw: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Update the weights on the weight-half views; returns the detached loss."""
        self.w_optimizer.zero_grad(set_to_none=True)
        with frozen(self.architect.alphas), self._autocast():
            loss = self.objective(*vw)
        grads = torch.autograd.grad(loss, self.weights, allow_unused=True)
        for p, g in zip(self.weights, grads):
            p.grad = g
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.weights, self.cfg.grad_clip, foreach=True)
        self.w_optimizer.step()
        return loss.detach()

    def step(self, batch: tuple[torch.Tensor, ...], lr: float | None, aug: torch.Generator) -> torch.Tensor:
        """One search step on ``(x_w, y_w, x_a, y_a)``: copies it into ``static_batch``, sets the weight
        learning rate (``None``: keep the current one) and runs ``captured_step``.

        Returns:
            (5,) device tensor of the step's losses and gradient share in ``COLUMNS`` order (no host sync).
        """
        for buffer, value in zip(self.static_batch, batch):
            buffer.copy_(value)
        if lr is not None:
            self.w_optimizer.set_lr(lr)
        return self.captured_step(aug)

    def captured_step(self, aug: torch.Generator) -> torch.Tensor:
        """The part of a step a CUDA graph would capture: views of ``static_batch`` drawn from ``aug``, alpha
        update, weight update, with the learning rate read from its device tensor."""
        xw, yw, xa, ya = self.static_batch
        vw = (*map(self._prepare, self.views(xw, aug)), yw)
        va = (*map(self._prepare, self.views(xa, aug)), ya)
        arch = self.arch_step(vw, va, self.w_optimizer.lr)
        loss = self.train_step(vw)
        return torch.stack([loss.float(), arch["ssl"].float(), arch["zero_one"].float(), arch["arch"].float(),
                            arch["grad_share_01"].float()])

    def run_epoch(self, progress: Callable[[int, int], None] | None = None) -> EpochReport:
        """Train one epoch; raises ``DivergenceError`` (before any checkpoint) if anything became non-finite."""
        epoch, start = self.epoch, time.perf_counter()
        lr = cosine_lr(epoch, self.cfg.epochs, self.cfg.lr, self.cfg.lr_min)
        self.w_optimizer.set_lr(lr)
        aug = self.aug_generator.manual_seed(epoch_seed(self.seed, epoch, 1))
        buffer = torch.zeros(self.steps_per_epoch, len(COLUMNS), device=self.device)
        self.objective.train()
        for s, batch in enumerate(self._batches(epoch)):
            buffer[s] = self.step(batch, None, aug)
            if progress is not None:
                progress(s + 1, self.steps_per_epoch)
        return self._finish_epoch(buffer, lr, time.perf_counter() - start)

    def _finish_epoch(self, buffer: torch.Tensor, lr: float, seconds: float) -> EpochReport:
        finite = torch.stack([buffer.isfinite().all()] + [p.isfinite().all() for p in self.objective.parameters()])
        values = buffer.cpu()  # the one host sync of the epoch
        if not bool(finite.all()):
            bad = (~values.isfinite().all(dim=1)).nonzero()
            step = self.global_step + (int(bad[0]) if len(bad) else self.steps_per_epoch - 1)
            raise DivergenceError(f"search diverged at step {step} (epoch {self.epoch}): a loss or a weight "
                                  "became NaN/inf; lower --search.lr or --search.arch-lr", step)
        arch = {k: v.float().cpu() for k, v in self.supernet.arch_weights().items()}
        self.alpha_history.append(arch)
        extra = {"grad_share_01": float(values[:, COLUMNS.index("grad_share_01")].mean())}
        for cell, w in arch.items():
            extra[f"decided/{cell}"] = decided_fraction(w.numpy(), self.supernet.relaxation, self.cfg.threshold)
            extra[f"fallback_nodes/{cell}"] = float(fallback_nodes(
                w.numpy(), self.supernet.n_nodes, self.supernet.relaxation, self.cfg.threshold,
                self.supernet.primitives))
        report = EpochReport(
            epoch=self.epoch, first_step=self.global_step,
            losses={c: values[:, i].tolist() for i, c in enumerate(COLUMNS)}, lr=lr,
            arch_weights={k: v.numpy() for k, v in arch.items()},
            genotype=self.supernet.genotype(self.cfg.threshold), seconds=seconds,
            images=self.steps_per_epoch * self.cfg.batch_size, extra=extra,
        )
        self.epoch += 1
        self.global_step += self.steps_per_epoch
        return report

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-exactly at the next epoch boundary."""
        return {
            "objective": self.objective.state_dict(),
            "w_optimizer": self.w_optimizer.state_dict(),
            "a_optimizer": self.a_optimizer.state_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "alpha_history": self.alpha_history,
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.objective.load_state_dict(state["objective"])
        self.w_optimizer.load_state_dict(state["w_optimizer"])
        self.a_optimizer.load_state_dict(state["a_optimizer"])
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.alpha_history = list(state["alpha_history"])
        torch.set_rng_state(state["torch_rng"])
