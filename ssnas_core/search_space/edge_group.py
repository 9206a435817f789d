"""All edges leaving one state of a search cell, computed together (fewer, larger kernels).

A search cell's state ``j`` feeds ``k`` edges, one to each later node. Every
candidate operation on those edges reads the same input, so:

* ReLU, and the pools with their BN, run once per state. The pools' BNs are
  affine-free and use batch statistics, so each edge's copy would compute the
  same tensor (and keep the same running statistics): sharing them is exact.
* Each convolution type (``sep_conv_3x3``, ...) of the ``k`` edges runs as one
  grouped convolution: depthwise with ``groups = k*C`` on the input repeated
  ``k`` times, pointwise with ``groups = k``, and one BN over the ``k*C``
  channels (per-channel statistics, so the same as ``k`` BNs).
* The stride-2 ``skip_connect`` (FactorizedReduce) of the ``k`` edges is two
  1x1 convolutions with all edges' output channels stacked.
* The weights of a per-edge operation (the convolutions, the stride-2 skip) multiply its output inside its
  last BN, as BN's per-channel weight (those BNs are affine-free, so ``w * BN(z)`` is BN with weight ``w``);
  BN's backward then gives their gradients with no pass of its own. The ``k`` mixed outputs are the sum of
  those, plus one fused multiply-add per shared operation (pools, identity skip).

``legacy_keys`` maps each grouped tensor to the per-edge state-dict names of
the straightforward implementation (``edges.<e>.ops.<op>.*``), which the cell
uses to read and write state dicts, so checkpoints, ``supernet.pt`` files and
weight inheritance keep their names.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssnas_core.search_space import cpu_kernels
from ssnas_core.search_space.primitives import BatchNorm2d, depthwise_conv, is_channels_last, offset_pixels

# (grouped tensor name, legacy suffix after ``ops.``, how it maps: "split" k ways along dim 0, or "shared")
LegacyKey = tuple[str, str, str]
_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _bn(c: int) -> BatchNorm2d:
    return BatchNorm2d(c, affine=False)


class GroupedDilConv(nn.Module):
    """``k`` DilConvs (depthwise dilated conv -> pointwise conv -> BN) on one input, after a shared ReLU."""

    def __init__(self, c: int, k: int, kernel: int, stride: int, padding: int, dilation: int) -> None:
        super().__init__()
        self.k, self.stride, self.padding, self.dilation = k, stride, padding, dilation
        self.dw = nn.Parameter(torch.empty(k * c, 1, kernel, kernel))
        self.pw = nn.Parameter(torch.empty(k * c, c, 1, 1))
        self.bn = _bn(k * c)
        _init_like_conv(self.dw, 1 * kernel * kernel)
        _init_like_conv(self.pw, c)

    def forward(self, xr_k: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """xr_k: (B, k*C, H, W), the ReLU'd input repeated k times -> (B, k*C, H', W'), each channel times
        ``scale`` (k*C,) when given."""
        y = depthwise_conv(xr_k, self.dw, self.stride, self.padding, self.dilation)
        return self.bn(F.conv2d(y, self.pw, groups=self.k), scale)  # type: ignore[no-any-return]

    @staticmethod
    def legacy(prefix: str, legacy: str) -> list[LegacyKey]:
        keys = [(f"{prefix}dw", f"{legacy}1.weight", "split"), (f"{prefix}pw", f"{legacy}2.weight", "split")]
        return keys + [(f"{prefix}bn.{b}", f"{legacy}3.{b}", _bn_mode(b)) for b in _BN_BUFFERS]


class GroupedSepConv(nn.Module):
    """``k`` SepConvs: two GroupedDilConv blocks of dilation 1, the first with the stride."""

    def __init__(self, c: int, k: int, kernel: int, stride: int) -> None:
        super().__init__()
        pad = kernel // 2
        self.first = GroupedDilConv(c, k, kernel, stride, pad, 1)
        self.second = GroupedDilConv(c, k, kernel, 1, pad, 1)

    def forward(self, xr_k: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        return self.second(torch.relu_(self.first(xr_k)), scale)  # type: ignore[no-any-return]

    @staticmethod
    def legacy(prefix: str, legacy: str) -> list[LegacyKey]:
        return (GroupedDilConv.legacy(f"{prefix}first.", f"{legacy}0.")
                + GroupedDilConv.legacy(f"{prefix}second.", f"{legacy}1."))


class GroupedFactorizedReduce(nn.Module):
    """``k`` FactorizedReduce skips (two offset 1x1 stride-2 convs, concatenated, BN) on one ReLU'd input."""

    def __init__(self, c: int, k: int) -> None:
        super().__init__()
        if c % 2:
            raise ValueError(f"FactorizedReduce needs an even channel count, got {c}")
        self.k = k
        self.conv_1 = nn.Parameter(torch.empty(k * c // 2, c, 1, 1))
        self.conv_2 = nn.Parameter(torch.empty(k * c // 2, c, 1, 1))
        self.bn = _bn(k * c)
        _init_like_conv(self.conv_1, c)
        _init_like_conv(self.conv_2, c)

    def forward(self, xr: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """xr: (B, C, H, W) ReLU'd -> (B, k*C, H', W'), each edge's channels as [conv_1, conv_2], times
        ``scale`` (k*C,) when given."""
        # both offset convs as one grouped 1x1 conv on the pixels they read (primitives.FactorizedReduce)
        y = F.conv2d(offset_pixels(xr), torch.cat([self.conv_1, self.conv_2]), groups=2)
        b, kc, h, w = y.shape
        # channels (conv, edge, c/2) -> (edge, conv, c/2): one copy, in y's layout (the mixing's sum takes its
        # layout from the per-edge outputs, and every other one is channels_last on the CPU)
        if is_channels_last(y):
            nhwc = y.permute(0, 2, 3, 1).unflatten(3, (2, self.k, -1)).transpose(3, 4).reshape(b, h, w, kc)
            y = nhwc.permute(0, 3, 1, 2)
        else:
            y = y.unflatten(1, (2, self.k, -1)).transpose(1, 2).reshape(b, kc, h, w)
        return self.bn(y, scale)  # type: ignore[no-any-return]

    @staticmethod
    def legacy(prefix: str, legacy: str) -> list[LegacyKey]:
        keys = [(f"{prefix}conv_1", f"{legacy}conv_1.weight", "split"),
                (f"{prefix}conv_2", f"{legacy}conv_2.weight", "split")]
        return keys + [(f"{prefix}bn.{b}", f"{legacy}bn.{b}", _bn_mode(b)) for b in _BN_BUFFERS]


def _repeat_channels(x: torch.Tensor, k: int) -> torch.Tensor:
    """``torch.cat([x] * k, dim=1)`` in one copy whose backward is one sum (cat's is k slices and k - 1 adds),
    in ``x``'s memory format (channels_last stays channels_last)."""
    b, c, h, w = x.shape
    if is_channels_last(x):
        nhwc = x.permute(0, 2, 3, 1).unsqueeze(3).expand(b, h, w, k, c).reshape(b, h, w, k * c)
        return nhwc.permute(0, 3, 1, 2)
    return x.unsqueeze(1).expand(b, k, c, h, w).reshape(b, k * c, h, w)


# How _Mix computes the shared operations' weight gradients: stacked (3 kernels a group) or one product and sum per
# operation. None: stacked off the CPU only. A GPU step is bound by kernel launches; a CPU step by memory traffic,
# where the stack's copy cost 10% of a search step (measured, batch 32, width 16). Tests set it to check both forms.
STACK_WEIGHT_GRADS: bool | None = None


class _Mix(torch.autograd.Function):
    """The mixing of one edge group, ``out_e = sum_p w_pe * y_pe``, returned as the ``k`` edges' outputs.

    Inputs: ``n`` per-edge outputs ``y_p`` of shape ``(B, k*C, H, W)`` already multiplied by their weights (their
    batch norm took the weights as its per-channel weight, so BN's backward gives the weights' gradients and the
    product costs no pass of its own), then ``m`` outputs shared by the ``k`` edges (pools, the identity skip),
    ``(B, C, H, W)``, then those ``m`` weights, ``(1, k, 1, 1, 1)``. Returns the ``k`` edges' ``(B, C, H, W)``
    outputs, views of one ``(B, k, C, H, W)`` tensor laid out as the ``y_p`` are (channels_last on the CPU).

    The backward stacks the ``k`` gradients into one tensor in that layout (copied into it when they arrive in
    another, so that no product below mixes layouts, the slow path of a CPU elementwise kernel), and hands it
    unchanged to every ``y_p``; for a shared output ``dy = sum_e w_e * grad_e``, and its weight's
    gradient ``sum(grad * y)`` over all but the edge axis, only when the weights need one (not in the weight-only
    gradients, taken with the alphas frozen); off the CPU for all at once (stacked).

    On float32 channels-last CPU tensors, where ``cpu_kernels`` is built, forward and backward are one pass each
    (``mix_forward``, ``mix_backward``): the same results.
    """

    @staticmethod
    def forward(ctx: Any, n: int, k: int, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        scaled, rest = tensors[:n], tensors[n:]
        m = len(rest) // 2
        shared, ws = rest[:m], rest[m:]
        ctx.compiled = (cpu_kernels.usable(*scaled, *shared) and all(w.dtype == torch.float32 for w in ws)
                        and bool(scaled or shared))
        if ctx.compiled:  # one pass (cpu_kernels.mix_forward): the same sum
            ctx.n, ctx.k = n, k
            weights = torch.cat([w.reshape(1, k) for w in ws]) if ws else scaled[0].new_empty(0, k)
            ctx.save_for_backward(*shared, weights)
            out = cpu_kernels.kernels().mix_forward(list(scaled), list(shared), weights, k)
            return tuple(out.unflatten(1, (k, -1)).unbind(1))
        edges = [y.unflatten(1, (k, -1)) for y in scaled]
        out: torch.Tensor | None = None
        if edges:  # the first add out of place: one pass fewer than a copy, in the per-edge outputs' layout
            out = torch.add(edges[0], edges[1]) if len(edges) > 1 else edges[0].clone()
            for y in edges[2:]:
                out.add_(y)
        for y, w in zip(shared, ws):
            y = y.unsqueeze(1)
            out = y * w if out is None else out.addcmul_(y, w)
        assert out is not None
        ctx.n, ctx.meta = n, (out.shape, out.stride())
        ctx.save_for_backward(*shared, *ws)
        return tuple(out.unbind(1))

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if ctx.compiled:
            return _mix_compiled_backward(ctx, grads)
        n = ctx.n
        saved = ctx.saved_tensors
        m = len(saved) // 2
        shared, ws = saved[:m], saved[m:]
        need = ctx.needs_input_grad[2:]
        shape, stride = ctx.meta
        grad = torch.stack(grads, dim=1)  # in the per-edge outputs' layout when the k gradients share it
        if grad.stride() != stride:  # else one copy into it: the products below then see one layout
            grad = torch.empty_strided(shape, stride, dtype=grad.dtype, device=grad.device).copy_(grad)
        flat = grad.flatten(1, 2)
        dys: list[torch.Tensor | None] = [flat if need_y else None for need_y in need[:n]]
        for y, w, need_y in zip(shared, ws, need[n:n + m]):
            dy = None
            if need_y:
                dy = torch.empty_like(y)
                torch.sum(grad * w, dim=1, out=dy)
            dys.append(dy)
        dws: list[torch.Tensor | None] = [None] * m
        stack = grad.device.type != "cpu" if STACK_WEIGHT_GRADS is None else STACK_WEIGHT_GRADS
        if any(need[n + m:]) and stack:  # all weights' gradients at once: one stack, one product, one sum
            stacked = torch.stack([y.unsqueeze(1).expand_as(grad) for y in shared])
            dws = list((stacked * grad).sum((1, 3, 4, 5), keepdim=True).unbind(0))
        elif any(need[n + m:]):
            dws = [(grad * y.unsqueeze(1)).sum((0, 2, 3, 4), keepdim=True) for y in shared]
        return (None, None, *dys, *dws)


def _mix_compiled_backward(ctx: Any, grads: Sequence[torch.Tensor]) -> tuple[torch.Tensor | None, ...]:
    """``_Mix``'s backward in one pass (``cpu_kernels.mix_backward``): the same three results."""
    n, k = ctx.n, ctx.k
    *shared, weights = ctx.saved_tensors
    m = len(shared)
    need = ctx.needs_input_grad[2:]
    grads = [g.contiguous(memory_format=torch.channels_last) for g in grads]
    flat, dys, dws = cpu_kernels.kernels().mix_backward(grads, shared, weights, any(need[n:n + m]),
                                                        any(need[n + m:]))
    out: list[torch.Tensor | None] = [flat if need_y else None for need_y in need[:n]]
    out += [dys[q] if need[n + q] else None for q in range(m)]
    out += [dws[q].view(1, k, 1, 1, 1) if need[n + m + q] else None for q in range(m)]
    return (None, None, *out)


def _bn_mode(buffer: str) -> str:
    return "shared" if buffer == "num_batches_tracked" else "split"


def _init_like_conv(weight: nn.Parameter, fan_in: int) -> None:
    """``nn.Conv2d``'s default initialisation (kaiming uniform, a = sqrt(5)) for a weight of fan-in ``fan_in``."""
    bound = 1.0 / fan_in**0.5
    nn.init.uniform_(weight, -bound, bound)


_CONVS = {"sep_conv_3x3": (3, "sep"), "sep_conv_5x5": (5, "sep"), "dil_conv_3x3": (3, "dil"),
          "dil_conv_5x5": (5, "dil")}


class EdgeGroup(nn.Module):
    """The ``k`` edges leaving one state, every candidate operation, mixed by their relaxed weights.

    Args:
        c: channels C of the cell.
        stride: 2 for the edges leaving a reduction cell's inputs, else 1.
        k: edges in the group.
        primitives: candidate operations (``none`` contributes nothing and is skipped).
    """

    def __init__(self, c: int, stride: int, k: int, primitives: Sequence[str]) -> None:
        super().__init__()
        self.k, self.stride = k, stride
        self.primitives = tuple(primitives)
        unknown = [p for p in self.primitives if p not in (*_CONVS, "max_pool_3x3", "avg_pool_3x3",
                                                           "skip_connect", "none")]
        if unknown:
            raise ValueError(f"the search cell has no grouped form of operation(s) {unknown}")
        self.convs = nn.ModuleDict()
        for p in self.primitives:
            if p in _CONVS:
                kernel, kind = _CONVS[p]
                self.convs[p] = (GroupedSepConv(c, k, kernel, stride) if kind == "sep"
                                 else GroupedDilConv(c, k, kernel, stride, kernel - 1, 2))
        self.pool_bn = nn.ModuleDict({p: _bn(c) for p in self.primitives if p in ("max_pool_3x3", "avg_pool_3x3")})
        self.reduce = GroupedFactorizedReduce(c, k) if stride == 2 and "skip_connect" in self.primitives else None
        if not self.convs and not self.pool_bn and "skip_connect" not in self.primitives:
            raise ValueError("a search cell needs at least one operation other than 'none'")

    def forward(self, x: torch.Tensor, weights: Sequence[torch.Tensor],
                scales: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """x: (B, C, H, W); per primitive its weights as a (1, k, 1, 1, 1) tensor and as a (k*C,) per-channel
        scale -> the k edges' mixed outputs, each (B, C, H', W')."""
        xr = torch.relu(x)
        xr_k = _repeat_channels(xr, self.k) if self.convs and self.k > 1 else xr
        scaled, shared, ws = [], [], []
        for p, w, scale in zip(self.primitives, weights, scales):
            if p == "none":
                continue
            if p in self.convs:
                scaled.append(self.convs[p](xr_k, scale))
            elif p == "skip_connect" and self.reduce is not None:
                scaled.append(self.reduce(xr, scale))
            else:
                shared.append(self._shared(p, x))
                ws.append(w)
        return _Mix.apply(len(scaled), self.k, *scaled, *shared, *ws)  # type: ignore[no-any-return]

    def _shared(self, p: str, x: torch.Tensor) -> torch.Tensor:
        """An operation whose output the k edges share (before their weights): (B, C, H', W')."""
        if p == "max_pool_3x3":
            return self.pool_bn[p](F.max_pool2d(x, 3, self.stride, 1))  # type: ignore[no-any-return]
        if p == "avg_pool_3x3":
            return self.pool_bn[p](F.avg_pool2d(x, 3, self.stride, 1, count_include_pad=False))  # type: ignore
        return x  # skip_connect, stride 1

    def legacy_keys(self) -> list[LegacyKey]:
        """Every tensor of the group: its name here, the per-edge name after ``ops.``, and how it maps."""
        keys: list[LegacyKey] = []
        for p, module in self.convs.items():
            keys += module.legacy(f"convs.{p}.", f"{p}.")
        for p in self.pool_bn:
            keys += [(f"pool_bn.{p}.{b}", f"{p}.1.{b}", "shared") for b in _BN_BUFFERS]
        if self.reduce is not None:
            keys += GroupedFactorizedReduce.legacy("reduce.", "skip_connect.")
        return keys
