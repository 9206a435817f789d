"""The search's optimisers, written so that a step makes no host synchronisation (ready for CUDA graph capture).

``torch.optim.SGD`` (foreach) reads a tensor learning rate with ``.item()`` outside ``torch.compile``
(torch/optim/sgd.py, ``alpha=-lr``), and ``torch.optim.Adam`` reads its step count with ``.item()`` unless
``capturable=True``, which it refuses for CPU tensors (torch/optim/adam.py). These two do the same updates
with multi-tensor (``torch._foreach_*``) operations and keep everything that changes between steps in
device tensors:

* ``DeviceSGD``: the learning rate is a device tensor (``set_lr`` fills it), so a captured step follows the
  cosine schedule without re-capture.
* ``DeviceAdam``: the step count is a device tensor and the bias corrections are computed from it on the
  device, in float64: ``1 - 0.999 ** step`` loses 1e-5 of its value to cancellation in float32 at step 1
  (torch's capturable Adam computes it in float32).

State and ``param_groups`` keys are those of ``torch.optim.SGD``/``Adam`` (``momentum_buffer``; ``step``,
``exp_avg``, ``exp_avg_sq``), so checkpoints written with the torch optimisers load into these and the
other way round. The maths is torch's (dampening 0, no Nesterov; Adam without amsgrad, L2 weight decay
added to the gradient); ``tests/test_search_optim.py`` checks both against torch's over several steps.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch


def _with_grads(group: dict[str, Any]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    params = [p for p in group["params"] if p.grad is not None]
    return params, [p.grad for p in params]


class DeviceSGD(torch.optim.Optimizer):
    """SGD with momentum and L2 weight decay, as ``torch.optim.SGD(momentum=m, weight_decay=wd)``, its
    learning rate in a device tensor.

    Args:
        params: parameters (one group).
        lr: initial learning rate (``set_lr`` changes it).
        momentum: momentum factor.
        weight_decay: L2 penalty added to the gradient.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                                  "dampening": 0.0, "nesterov": False})
        device = self.param_groups[0]["params"][0].device
        self.lr = torch.tensor(float(lr), dtype=torch.float64, device=device)

    def set_lr(self, lr: float) -> None:
        """Set the learning rate: fills the device tensor (no new tensor, so a captured graph sees it)."""
        self.lr.fill_(lr)
        for group in self.param_groups:
            group["lr"] = lr

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.lr.fill_(float(self.param_groups[0]["lr"]))

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            params, grads = _with_grads(group)
            if not params:
                continue
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            if group["momentum"]:
                states = [self.state[p] for p in params]
                old = [(s["momentum_buffer"], g) for s, g in zip(states, grads) if "momentum_buffer" in s]
                if old:
                    bufs = [b for b, _ in old]
                    torch._foreach_mul_(bufs, group["momentum"])
                    torch._foreach_add_(bufs, [g for _, g in old])
                for s, g in zip(states, grads):  # a parameter's first step: its buffer is its gradient
                    if "momentum_buffer" not in s:
                        s["momentum_buffer"] = torch.clone(g).detach()
                grads = [s["momentum_buffer"] for s in states]
            torch._foreach_sub_(params, torch._foreach_mul(grads, self.lr))


class DeviceAdam(torch.optim.Optimizer):
    """Adam as ``torch.optim.Adam(lr, betas, eps, weight_decay)`` (no amsgrad), its step count in a device
    tensor.

    Args:
        params: parameters (one group).
        lr: learning rate (constant for the alphas).
        betas: ``(beta1, beta2)``.
        eps: added to the denominator.
        weight_decay: L2 penalty added to the gradient.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                                  "amsgrad": False, "maximize": False})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            params, grads = _with_grads(group)
            if not params:
                continue
            beta1, beta2 = group["betas"]
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float64, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                elif state["step"].device != p.device or state["step"].dtype != torch.float64:
                    # torch.optim.Adam's checkpoints keep it on the CPU, in float32
                    state["step"] = state["step"].to(device=p.device, dtype=torch.float64)
            states = [self.state[p] for p in params]
            steps = [s["step"] for s in states]
            exp_avg = [s["exp_avg"] for s in states]
            exp_avg_sq = [s["exp_avg_sq"] for s in states]
            torch._foreach_add_(steps, 1.0)
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sq, beta2)
            torch._foreach_addcmul_(exp_avg_sq, grads, grads, 1 - beta2)
            # bias corrections from the device step counts: 1 - beta ** step
            bc1 = torch._foreach_pow(beta1, steps)
            bc2 = torch._foreach_pow(beta2, steps)
            torch._foreach_neg_(bc1)
            torch._foreach_add_(bc1, 1.0)
            torch._foreach_neg_(bc2)
            torch._foreach_add_(bc2, 1.0)
            # param -= lr / bc1 * exp_avg / (sqrt(exp_avg_sq) / sqrt(bc2) + eps)
            denom = torch._foreach_sqrt(exp_avg_sq)
            torch._foreach_div_(denom, torch._foreach_sqrt(bc2))
            torch._foreach_add_(denom, group["eps"])
            step_size = torch._foreach_div(bc1, -group["lr"])  # -bc1 / lr: its reciprocal is the step size
            torch._foreach_reciprocal_(step_size)
            torch._foreach_addcdiv_(params, exp_avg, torch._foreach_div(denom, step_size))
