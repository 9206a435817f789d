"""Architecture step: first-order or second-order (unrolled) gradient of the alpha objective.

The alpha objective is ``s * L_val(w, alpha) + w01 * L_01(alpha)`` (the zero-one
term only for the sigmoid relaxation; ``s`` balances a self-supervised loss
against the zero-one loss as FairDARTS balances cross-entropy against it, see
``SearchConfig.ssl_arch_scale``). Second order follows DARTS (Liu et al.
2019, eq. 7-8): with ``w' = w - xi * grad_w L_train(w, alpha)``,

    grad_alpha = grad_alpha L_val(w', alpha)
                 - xi * [grad_alpha L_train(w+, alpha) - grad_alpha L_train(w-, alpha)] / (2 eps)

where ``w+- = w +- eps * grad_w' L_val(w', alpha)`` and ``eps = 0.01 / ||grad_w' L_val||``.
``xi`` is the current weight learning rate. The norm is clamped away from 0 so a
zero gradient gives a zero Hessian term instead of inf/NaN (khanrc/pt.darts
architect.py divides by it unguarded). No host synchronisation happens here.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from ssnas_core.losses.zero_one import zero_one_grad, zero_one_loss

Objective = Callable[[], torch.Tensor]


def _norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of a list of tensors taken as one vector (no host sync)."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t.float()) for t in tensors]))



@contextlib.contextmanager
def frozen(params: Sequence[torch.Tensor]) -> Iterator[None]:
    """A forward with ``params`` as constants: its graph records no gradients for them.

    For the weight-only gradients (the weight step, the second-order term's train gradient). ``autograd.grad``
    would not compute the alphas' gradients anyway, but the mixing's hand-written backward (``edge_group._Mix``)
    only knows what each input requires, not what a call asks for.
    """
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)

class Architect:
    """Updates the alphas with their own optimiser (Adam, as in DARTS).

    Args:
        alphas: architecture parameters.
        weights: network parameters (supernet weights and head).
        optimizer: the alphas' optimiser.
        w01: weight of the zero-one loss (0 disables it).
        order: 1 or 2.
        ssl_scale: factor ``s`` on the SSL loss in the alpha objective.
    """

    def __init__(self, alphas: Sequence[nn.Parameter], weights: Sequence[nn.Parameter],
                 optimizer: torch.optim.Optimizer, w01: float, order: int = 1, ssl_scale: float = 1.0) -> None:
        if order not in (1, 2):
            raise ValueError(f"architecture gradient order must be 1 or 2, got {order}")
        self.alphas = list(alphas)
        self.weights = list(weights)
        self.optimizer = optimizer
        self.w01 = w01
        self.order = order
        self.ssl_scale = ssl_scale

    def step(self, val_loss: Objective, train_loss: Objective, xi: float) -> dict[str, torch.Tensor]:
        """One alpha update. ``val_loss``/``train_loss`` recompute the SSL loss on the alpha/weight batch.

        Returns:
            Detached scalars: ``ssl`` (L_val, unscaled), ``zero_one`` (L_01), ``arch`` (the total objective
            ``s * L_val + w01 * L_01``) and ``grad_share_01`` (the norm of the zero-one term's alpha gradient
            over the scaled SSL term's; 0 without the zero-one term).
        """
        self.optimizer.zero_grad(set_to_none=True)
        if self.order == 1:
            loss = val_loss()
            grads = list(torch.autograd.grad(loss * self.ssl_scale, self.alphas))
        else:
            loss, grads = self._unrolled(val_loss, train_loss, xi)
            grads = [g * self.ssl_scale for g in grads]
        with torch.no_grad():
            l01 = zero_one_loss(self.alphas)
        total = loss.detach() * self.ssl_scale
        share = torch.zeros((), device=l01.device)
        if self.w01 > 0:
            # The zero-one term's gradient is closed-form on the alphas alone: no second backward.
            g01 = [self.w01 * g for g in zero_one_grad(self.alphas)]
            share = _norm(g01) / _norm(grads).clamp_min(1e-30)
            grads = [g + h for g, h in zip(grads, g01)]
            total = total + self.w01 * l01.detach()
        for a, g in zip(self.alphas, grads):
            a.grad = g
        self.optimizer.step()
        return {"ssl": loss.detach(), "zero_one": l01.detach(), "arch": total, "grad_share_01": share}

    @torch.no_grad()
    def _shift(self, direction: Sequence[torch.Tensor], scale: float | torch.Tensor) -> None:
        for w, d in zip(self.weights, direction):
            w.add_(d * scale)

    def _unrolled(self, val_loss: Objective, train_loss: Objective, xi: float
                  ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        backup = [w.detach().clone() for w in self.weights]
        with torch.enable_grad(), frozen(self.alphas):
            g_train = torch.autograd.grad(train_loss(), self.weights, allow_unused=True)
        g_train = [torch.zeros_like(w) if g is None else g for w, g in zip(self.weights, g_train)]
        self._shift(g_train, -xi)  # w' = w - xi * grad_w L_train
        loss = val_loss()
        g = torch.autograd.grad(loss, self.alphas + self.weights, allow_unused=True)
        d_alpha = [torch.zeros_like(a) if x is None else x for a, x in zip(self.alphas, g[: len(self.alphas)])]
        d_w = [torch.zeros_like(w) if x is None else x for w, x in zip(self.weights, g[len(self.alphas):])]
        with torch.no_grad():
            for w, b in zip(self.weights, backup):
                w.copy_(b)
        norm = torch.sqrt(sum((d.double().pow(2).sum() for d in d_w), torch.zeros((), dtype=torch.float64,
                                                                                  device=d_w[0].device)))
        eps = (0.01 / norm.clamp_min(1e-12)).to(d_w[0].dtype)
        self._shift(d_w, eps)
        g_pos = torch.autograd.grad(train_loss(), self.alphas)
        self._shift(d_w, -2 * eps)
        g_neg = torch.autograd.grad(train_loss(), self.alphas)
        with torch.no_grad():
            for w, b in zip(self.weights, backup):
                w.copy_(b)
        hessian = [(p - n) / (2 * eps) for p, n in zip(g_pos, g_neg)]
        return loss, [d - xi * h for d, h in zip(d_alpha, hessian)]
