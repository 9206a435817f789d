"""The fine-tune engine: supervised epochs on device-resident data, evaluation as probabilities.

Same discipline as the search engine: static batch shapes (drop_last), data and
augmentation on the device, per-step losses in a device buffer read once per
epoch, where the NaN guard looks.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ssnas_core.config import FinetuneConfig
from ssnas_core.errors import DivergenceError
from ssnas_core.search.engine import use_channels_last
from ssnas_core.search.schedule import cosine_lr, epoch_seed


@dataclass
class LabeledData:
    """uint8 images (N, C, H, W) and labels of each split, on the training device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


class FinetuneEngine:
    """Trains ``model`` on ``criterion(adjust(model(x)), y)``; evaluates plain logits.

    Args:
        cfg: fine-tune settings.
        model: maps normalised (B, C, H, W) images to logits (B, K).
        criterion: loss on (logits, labels); may have ``set_epoch(epoch, epochs)`` (LDAM-DRW).
        adjust: training-time logit transform (logit adjustment) or identity.
        augment: ``(x_uint8, generator) -> view`` training augmentation (one view per step).
        normalize: ``x_uint8 -> float`` evaluation transform.
        data: the splits on the device.
        multilabel: sigmoid scores instead of softmax.
        seed: data order and augmentation depend only on (seed, epoch).
    """

    def __init__(self, cfg: FinetuneConfig, model: nn.Module, criterion: nn.Module, adjust: nn.Module,
                 augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
                 normalize: Callable[[torch.Tensor], torch.Tensor], data: LabeledData, multilabel: bool,
                 seed: int) -> None:
        self.cfg, self.model, self.criterion, self.adjust = cfg, model, criterion, adjust
        self.augment, self.normalize, self.data = augment, normalize, data
        self.multilabel, self.seed = multilabel, seed
        self.device = data.x_train.device
        # post-hoc logit adjustment subtracted at prediction time (finetune.posthoc); None: plain logits
        self.posthoc_offset: torch.Tensor | None = None
        self.channels_last = use_channels_last(cfg.channels_last, self.device)
        self.optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay, foreach=True)
        self.steps_per_epoch = len(data.x_train) // cfg.batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(f"the training set needs at least one batch of {cfg.batch_size}")
        self.epoch = 0

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.cfg.amp == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One SGD step on a float batch; returns the detached loss."""
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            logits = self.model(self._prepare(x))
        loss = self.criterion(self.adjust(logits.float()), y)
        loss.backward()
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip, foreach=True)
        self.optimizer.step()
        return loss.detach()

    def run_epoch(self, progress: Callable[[int, int], None] | None = None) -> float:
        """Train one epoch; returns the mean training loss (one host sync). ``progress(done, total)`` is called
        after each step (a progress bar: it reads nothing from the device)."""
        epoch = self.epoch
        lr = cosine_lr(epoch, self.cfg.epochs, self.cfg.lr, self.cfg.lr_min)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if hasattr(self.criterion, "set_epoch"):
            self.criterion.set_epoch(epoch, self.cfg.epochs)
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch, 2))
        perm = torch.randperm(len(self.data.x_train), generator=gen).to(self.device)
        aug = torch.Generator(device=self.device).manual_seed(epoch_seed(self.seed, epoch, 3))
        losses = torch.zeros(self.steps_per_epoch, device=self.device)
        self.model.train()
        self.adjust.train()
        b = self.cfg.batch_size
        for s in range(self.steps_per_epoch):
            idx = perm[s * b:(s + 1) * b]
            x = self.augment(self.data.x_train[idx], aug) if self.cfg.aug_strength > 0 \
                else self.normalize(self.data.x_train[idx])
            losses[s] = self.train_step(x, self.data.y_train[idx])
            if progress is not None:
                progress(s + 1, self.steps_per_epoch)
        mean = float(losses.mean())
        if not np.isfinite(mean):
            step = epoch * self.steps_per_epoch + int((~losses.isfinite()).nonzero()[0])
            raise DivergenceError(f"fine-tuning diverged at step {step} (epoch {epoch}): the loss became "
                                  "NaN/inf; lower --finetune.lr", step)
        self.epoch += 1
        return mean

    def state_dict(self) -> dict[str, Any]:
        """Model, optimiser and epoch: enough to continue at the next epoch boundary."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])

    @torch.no_grad()
    def logits(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """The network's plain logits (N, K) on the device, in eval mode."""
        self.model.eval()
        self.adjust.eval()
        out = []
        for i in range(0, len(x), batch_size):
            with self._autocast():
                out.append(self.model(self._prepare(self.normalize(x[i:i + batch_size]))).float())
        return torch.cat(out)

    def predict(self, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """Probabilities (N, K): softmax, or per-label sigmoid for multi-label tasks, of the logits less the
        post-hoc offset when one is set."""
        return self.scores(self.logits(x, batch_size))

    def scores(self, logits: torch.Tensor, posthoc: bool = True) -> np.ndarray:
        """Probabilities of ``logits`` (from ``logits``): less the post-hoc offset when one is set and ``posthoc``,
        then softmax, or per-label sigmoid for multi-label tasks."""
        if posthoc and self.posthoc_offset is not None:
            logits = logits - self.posthoc_offset.to(logits.device)
        return (torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)).cpu().numpy()

    def evaluate(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(y_true, y_score)`` of ``split`` (val or test) as NumPy arrays."""
        x, y = getattr(self.data, f"x_{split}"), getattr(self.data, f"y_{split}")
        return y.cpu().numpy(), self.predict(x)
