"""Architecture step: first-order or second-order (unrolled) gradient of the alpha objective.

The alpha objective is ``s * L_val(w, alpha) + w01 * L_01(alpha)`` (the zero-one
term only for the sigmoid relaxation; ``s`` balances a self-supervised loss
against the zero-one loss as FairDARTS balances cross-entropy against it, see
``SearchConfig.ssl_arch_scale``). Second order follows DARTS (Liu et al.
2019, eq. 7-8): with ``w' = w - xi * grad_w L_train(w, alpha)``,

    grad_alpha = grad_alpha L_val(w', alpha)
                 - xi * [grad_alpha L_train(w+, alpha) - grad_alpha L_train(w-, alpha)] / (2 eps)

where ``w+- = w +- eps * grad_w' L_val(w', alpha)`` and ``eps = 0.01 / ||grad_w' L_val||``.
``xi`` is the current weight learning rate (a device tensor in the engine). The norm is clamped away from 0
so a zero gradient gives a zero Hessian term instead of inf/NaN (khanrc/pt.darts architect.py divides by it
unguarded). No host synchronisation happens here, and the weight shifts are multi-tensor (``_foreach``)
operations on a persistent backup buffer.
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
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm([t.float() for t in tensors])))


@contextlib.contextmanager
def frozen(params: Sequence[torch.Tensor]) -> Iterator[None]:
    """A forward with ``params`` as constants: its graph records no gradients for them.

    For the weight-only gradients (the weight step, the second-order term's train gradient), and with the weights
    as ``params`` for the alpha-only ones. ``autograd.grad`` would not compute the others' gradients anyway, but a
    hand-written backward (``edge_group._Mix``, the compiled depthwise weight gradient of
    ``primitives._DepthwiseCompiled``) only knows what each input requires, not what a call asks for.
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
        self._backup: list[torch.Tensor] | None = None  # the weights before the virtual step (second order)

    def step(self, val_loss: Objective, train_loss: Objective, xi: float | torch.Tensor
             ) -> dict[str, torch.Tensor]:
        """One alpha update. ``val_loss``/``train_loss`` recompute the SSL loss on the alpha/weight batch.

        Returns:
            Detached scalars: ``ssl`` (L_val, unscaled), ``zero_one`` (L_01), ``arch`` (the total objective
            ``s * L_val + w01 * L_01``) and ``grad_share_01`` (the norm of the zero-one term's alpha gradient
            over the scaled SSL term's; 0 without the zero-one term).
        """
        self.optimizer.zero_grad(set_to_none=True)
        if self.order == 1:
            with frozen(self.weights):  # the alphas' gradient only: no custom backward computes the weights'
                loss = val_loss()
            grads = list(torch.autograd.grad(loss * self.ssl_scale, self.alphas))
        else:
            loss, grads = self._unrolled(val_loss, train_loss, xi)
            grads = list(torch._foreach_mul(grads, self.ssl_scale))
        with torch.no_grad():
            l01 = zero_one_loss(self.alphas)
        total = loss.detach() * self.ssl_scale
        share = torch.zeros((), device=l01.device)
        if self.w01 > 0:
            # The zero-one term's gradient is closed-form on the alphas alone: no second backward.
            g01 = list(torch._foreach_mul(list(zero_one_grad(self.alphas)), self.w01))
            share = _norm(g01) / _norm(grads).clamp_min(1e-30)
            grads = list(torch._foreach_add(grads, g01))
            total = total + self.w01 * l01.detach()
        for a, g in zip(self.alphas, grads):
            a.grad = g
        self.optimizer.step()
        return {"ssl": loss.detach(), "zero_one": l01.detach(), "arch": total, "grad_share_01": share}

    def _unrolled(self, val_loss: Objective, train_loss: Objective, xi: float | torch.Tensor
                  ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        w = self.weights
        if self._backup is None:
            self._backup = [torch.empty_like(p) for p in w]
        with torch.no_grad():
            torch._foreach_copy_(self._backup, w)
        with torch.enable_grad(), frozen(self.alphas):
            g_train = torch.autograd.grad(train_loss(), w, allow_unused=True)
        g_train = [torch.zeros_like(p) if g is None else g for p, g in zip(w, g_train)]
        if isinstance(xi, torch.Tensor):
            xi = xi.to(w[0].dtype)
        with torch.no_grad():
            torch._foreach_sub_(w, torch._foreach_mul(g_train, xi))  # w' = w - xi * grad_w L_train
        loss = val_loss()
        g = torch.autograd.grad(loss, self.alphas + w, allow_unused=True)
        d_alpha = [torch.zeros_like(a) if x is None else x for a, x in zip(self.alphas, g[: len(self.alphas)])]
        d_w = [torch.zeros_like(p) if x is None else x for p, x in zip(w, g[len(self.alphas):])]
        with torch.no_grad():
            torch._foreach_copy_(w, self._backup)
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(d_w)).double())
            eps = (0.01 / norm.clamp_min(1e-12)).to(d_w[0].dtype)
            shift = torch._foreach_mul(d_w, eps)
            torch._foreach_add_(w, shift)  # w+ = w + eps * grad_w' L_val
        with frozen(w):
            g_pos = torch.autograd.grad(train_loss(), self.alphas)
        with torch.no_grad():
            torch._foreach_add_(w, shift, alpha=-2.0)  # w- = w - eps * grad_w' L_val
        with frozen(w):
            g_neg = torch.autograd.grad(train_loss(), self.alphas)
        with torch.no_grad():
            torch._foreach_copy_(w, self._backup)
            hessian = torch._foreach_sub(g_pos, g_neg)
            torch._foreach_div_(hessian, 2 * eps)
            return loss, list(torch._foreach_sub(d_alpha, torch._foreach_mul(hessian, xi)))
