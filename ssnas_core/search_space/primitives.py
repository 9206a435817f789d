"""The DARTS operation set (Liu et al., 2019) as a registry of factories.

Every factory has the signature ``(c, stride, affine) -> nn.Module`` and maps
``(B, c, H, W)`` to ``(B, c, H/stride, W/stride)``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ssnas_core.search_space import cpu_kernels

OpFactory = Callable[[int, int, bool], nn.Module]
OPS: dict[str, OpFactory] = {}


def register_op(name: str) -> Callable[[OpFactory], OpFactory]:
    """Register an operation factory under ``name``; a duplicate name is an error."""

    def add(factory: OpFactory) -> OpFactory:
        if name in OPS:
            raise KeyError(f"operation {name!r} is registered twice")
        OPS[name] = factory
        return factory

    return add


def is_channels_last(x: torch.Tensor) -> bool:
    """True for a 4-D tensor laid out channels-last that is not also NCHW-contiguous (one channel or 1x1)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


class _ChannelsLastBatchNorm(torch.autograd.Function):
    """Training batch norm on the CPU for a channels-last input: ``native_batch_norm`` forward, and its backward
    on a gradient first made channels-last contiguous.

    oneDNN's CPU backward is fast only when the gradient has the input's layout. The gradient often does not:
    a cell's output is a ``torch.cat`` of its nodes, whose backward hands each node a channel slice of the
    output's gradient. ``native_batch_norm_backward`` then takes a generic path, measured on one thread at
    (32, 16, 28, 28): 9.8 ms on such a slice, 4.4 ms on an NCHW gradient, 0.75 ms after one copy into the
    input's layout. Same maths (the copy changes no value), same saved tensors as autograd's own node.

    In float32, forward and backward run ``cpu_kernels``' two-pass batch norm where it is built (the backward
    about twice as fast as torch's at the search's sizes); the running statistics get the same update.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):  # type: ignore[no-untyped-def]
        module = _bn_kernels(x, weight, bias)
        if module is not None:
            out, mean, invstd, var = module.bn_forward(x, weight, bias, eps)
            running_mean.lerp_(mean, momentum)  # what native_batch_norm does to them: (1 - m) * r + m * stat
            running_var.lerp_(var, momentum)
        else:
            out, mean, invstd = torch.native_batch_norm(x, weight, bias, running_mean, running_var, True,
                                                        momentum, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps, ctx.compiled = eps, module is not None
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        x, weight, mean, invstd = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]]
        if ctx.compiled:
            gx, gw, gb = cpu_kernels.kernels().bn_backward(grad, x, mean, invstd, weight)  # type: ignore[union-attr]
            return gx if mask[0] else None, gw if mask[1] else None, gb if mask[2] else None, None, None, None, None
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(grad, x, weight, None, None, mean, invstd, True,
                                                               ctx.eps, mask)
        return gx, gw, gb, None, None, None, None


def _bn_kernels(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> Any:
    """``cpu_kernels``' module when a batch norm of these tensors can use it (float32 throughout), else None."""
    if not all(t is None or (t.dtype == torch.float32 and t.is_contiguous()) for t in (weight, bias)):
        return None
    return cpu_kernels.kernels() if cpu_kernels.usable(x) else None


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that trains with two fewer operations per call (the same maths, state-dict names and
    running statistics).

    In training, ``nn.BatchNorm2d`` adds 1 to ``num_batches_tracked`` (one kernel) and goes through
    ``torch.batch_norm``, which allocates an empty reserve tensor before ``native_batch_norm``; that is 264 of
    the about 4,000 kernels of a search step. Here training calls ``torch.native_batch_norm`` directly and leaves
    ``num_batches_tracked`` as it is: torch reads it only when ``momentum`` is None (a cumulative average), which
    this class hands to ``nn.BatchNorm2d``. The buffer stays, so checkpoints keep their keys. Evaluation, and
    inputs ``nn.BatchNorm2d`` would refuse (one value per channel), go through ``nn.BatchNorm2d`` itself. On the
    CPU a channels-last input trains through ``_ChannelsLastBatchNorm`` (the same maths, a faster backward).
    """

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """``scale``: for an affine-free BN only, a per-channel factor applied to the output, given to batch norm
        as its weight (the search's mixing weights, whose gradient then comes from BN's backward)."""
        if scale is not None and self.affine:
            raise ValueError("BatchNorm2d: scale is for an affine-free batch norm only")
        weight = self.weight if scale is None else scale
        if (not self.training or not self.track_running_stats or self.momentum is None or x.dim() != 4
                or x.shape[0] * x.shape[2] * x.shape[3] == 1):
            out = super().forward(x)  # in the output's dtype, as native_batch_norm returns it (bf16 under autocast)
            return out if scale is None else out * scale.view(1, -1, 1, 1).to(out.dtype)
        if x.device.type == "cpu" and is_channels_last(x):
            return _ChannelsLastBatchNorm.apply(x, weight, self.bias, self.running_mean, self.running_var,
                                                self.momentum, self.eps)
        return torch.native_batch_norm(x, weight, self.bias, self.running_mean, self.running_var, True,
                                       self.momentum, self.eps)[0]


class ReLUConvBN(nn.Sequential):
    """ReLU -> conv(k) -> BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            BatchNorm2d(c_out, affine=affine),
        )

    def on_relu(self, xr: torch.Tensor) -> torch.Tensor:
        """The same as ``self(x)`` given ``xr = relu(x)``, computed once for every reader of ``x``."""
        return self[2](self[1](xr))


class DepthwiseConv2d(nn.Conv2d):
    """Depthwise conv whose dilation-2 case runs as an undilated conv on the input's 2x2 phases on the CPU.

    oneDNN's backward of dilated depthwise convs is 4-8x slower than of undilated ones on the
    CPU. A dilation-2 conv equals an undilated conv (same weights, half the padding) applied to
    each of the four sub-images ``x[..., i::2, j::2]``, re-interleaved; with stride 2 only the
    ``(0, 0)`` phase is needed. Same parameters and outputs, so state dicts are interchangeable.
    """

    def __init__(self, c: int, kernel: int, stride: int, padding: int, dilation: int) -> None:
        super().__init__(c, c, kernel, stride, padding, dilation=dilation, groups=c, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depthwise_conv(x, self.weight, self.stride[0], self.padding[0], self.dilation[0], blocked=True)


def _blocked_weight_grad(x: torch.Tensor, grad: torch.Tensor, kernel: int, padding: int) -> torch.Tensor:
    """The (C, 1, k, k) weight gradient of a stride-1 depthwise conv, as 3x3 blocks of a kernel padded to a
    multiple of 3: each block's gradient is a 3x3 depthwise weight gradient over a shifted window of the padded
    input (the padding adds only rows and columns of the blocks that are cut off)."""
    c = x.shape[1]
    ho, wo = grad.shape[-2:]
    span = 3 * ((kernel + 2) // 3)
    extra_h = max(0, span + ho - 1 - (x.shape[-2] + 2 * padding))
    extra_w = max(0, span + wo - 1 - (x.shape[-1] + 2 * padding))
    xp = F.pad(x, (padding, padding + extra_w, padding, padding + extra_h))
    dummy = x.new_empty(c, 1, 3, 3)
    out = x.new_empty(c, 1, span, span)
    for a in range(0, span, 3):
        for b in range(0, span, 3):
            window = xp[:, :, a:a + ho + 2, b:b + wo + 2]
            out[:, :, a:a + 3, b:b + 3] = torch.ops.aten.convolution_backward(
                grad, window, dummy, None, [1, 1], [0, 0], [1, 1], False, [0, 0], c, [False, True, False])[1]
    return out[:, :, :kernel, :kernel]


class _Depthwise5x5(torch.autograd.Function):
    """A stride-1 5x5 depthwise conv on a channels-last CPU input whose weight gradient is four 3x3 ones.

    oneDNN's 5x5 depthwise weight gradient has no fast path on this CPU: 3.8 ms at (32, 16, 28, 28) on one
    thread, against 0.15 ms for the 3x3 one. As four 3x3 blocks of a 6x6 kernel (``_blocked_weight_grad``), the
    conv's forward and backward take 3.2 ms against 5.3 ms. The input gradient and the forward are oneDNN's.
    """

    @staticmethod
    def forward(ctx, x, weight, padding):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return F.conv2d(x, weight, None, 1, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        x, weight = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = torch.ops.aten.convolution_backward(grad, x, weight, None, [1, 1], [ctx.padding] * 2, [1, 1], False,
                                                     [0, 0], weight.shape[0], [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            gw = _blocked_weight_grad(x, grad, weight.shape[-1], ctx.padding)
        return gx, gw, None


class _DepthwiseCompiled(torch.autograd.Function):
    """A depthwise conv on a channels-last float32 CPU input, with a backward that avoids oneDNN's slow ones.

    Measured at (64, 64, 28, 28) on 2 threads, 2026-12-01 (oneDNN's forward takes 0.6-1.1 ms at these sizes):

    * input gradient of a stride-1 'same' conv: the forward conv of the gradient by the flipped kernel (the same
      sum), 1.2-1.4 ms, against oneDNN's backward-data at 1.1-1.7 ms undilated and 9-16 ms dilated;
    * weight gradient: ``cpu_kernels.dw_weight_grad`` (one pass, channels in registers), 3.5 ms for 5x5 against
      15 ms, 2.2-4.8 ms dilated; the 3x3 undilated one stays oneDNN's (0.8 ms, against 1.5 ms).

    A dilated conv then needs no phases (``depthwise_conv``), whose copies cost more than the conv.
    """

    @staticmethod
    def forward(ctx, x, weight, stride, padding, dilation):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(x, weight)
        ctx.conv = stride, padding, dilation
        return F.conv2d(x, weight, None, stride, padding, dilation, weight.shape[0])

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.conv
        c, kernel = weight.shape[0], weight.shape[-1]
        grad = grad.contiguous(memory_format=torch.channels_last)
        gx = gw = None
        if ctx.needs_input_grad[0]:
            if stride == 1 and 2 * padding == dilation * (kernel - 1):
                gx = F.conv2d(grad, weight.flip(-1, -2), None, 1, padding, dilation, c)
            else:
                gx = torch.ops.aten.convolution_backward(grad, x, weight, None, [stride] * 2, [padding] * 2,
                                                         [dilation] * 2, False, [0, 0], c, [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            if kernel == 3 and dilation == 1:
                gw = torch.ops.aten.convolution_backward(grad, x, weight, None, [stride] * 2, [padding] * 2,
                                                         [1, 1], False, [0, 0], c, [False, True, False])[1]
            else:
                gw = cpu_kernels.kernels().dw_weight_grad(x, grad, kernel, stride, padding,  # type: ignore
                                                          dilation)
        return gx, gw, None, None, None


def _compiled_path(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a depthwise conv goes through ``_DepthwiseCompiled``: a gradient is wanted, float32 channels-last
    on the CPU with ``cpu_kernels`` built, no autocast (which does not reach inside a custom Function)."""
    return (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad) and weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and cpu_kernels.usable(x))


def _layout(x: torch.Tensor) -> torch.memory_format:
    """The memory format a gradient of ``x`` should have: channels-last when ``x``'s channels are its innermost
    dimension (also for a channel slice of a channels-last tensor, which is contiguous in neither format)."""
    return torch.channels_last if x.dim() == 4 and x.stride(1) < x.stride(3) else torch.contiguous_format


def _custom_backward(x: torch.Tensor) -> bool:
    """Whether a pixel pick or pooling of ``x`` goes through its autograd Function: a gradient is wanted and no
    compiler or exporter is tracing (those get the plain ops, which they trace as they are)."""
    return x.requires_grad and torch.is_grad_enabled() and not torch.compiler.is_compiling()


class _EvenPixels(torch.autograd.Function):
    """``x[:, :, ::2, ::2]`` whose gradient keeps ``x``'s memory format.

    Autograd's backward of the two slices (``slice_backward``) zero-fills an NCHW tensor whatever the input's
    layout, so the ReLU before a stride-2 dilated conv then meets an NCHW gradient beside its channels-last
    input: ``threshold_backward`` takes a generic path, measured at (32, 32, 28, 28) on one CPU thread, 4.7 ms
    against 0.14 ms with both channels-last. Here the gradient is written once, every pixel, in the input's
    layout (the phases no conv reads as zeros).
    """

    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def]
        ctx.shape = x.shape
        ctx.fmt = _layout(x)
        return x[:, :, ::2, ::2]  # a view, as the slice is: the conv reads it as before

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        gx = torch.empty(ctx.shape, dtype=grad.dtype, device=grad.device, memory_format=ctx.fmt)
        gx[:, :, ::2, ::2] = grad
        gx[:, :, ::2, 1::2] = 0
        gx[:, :, 1::2] = 0
        return gx


def even_pixels(x: torch.Tensor) -> torch.Tensor:
    """``x[:, :, ::2, ::2]``: through ``_EvenPixels`` when a gradient is wanted, a plain slice otherwise."""
    if _custom_backward(x):
        return _EvenPixels.apply(x)
    return x[:, :, ::2, ::2]


class _GlobalMean(torch.autograd.Function):
    """``x.mean(dim=(2, 3))`` whose gradient has ``x``'s layout. Autograd's (an expand, then a divide) is NCHW
    whatever the input's layout, and the last cell's ``cat`` hands slices of it to channels-last nodes."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def]
        ctx.shape = x.shape
        ctx.fmt = _layout(x)
        return x.mean(dim=(2, 3))

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        b, c, h, w = ctx.shape
        return (grad / (h * w))[:, :, None, None].expand(ctx.shape).contiguous(memory_format=ctx.fmt)


def global_mean(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C), the mean over pixels (``_GlobalMean`` when a gradient is wanted)."""
    if _custom_backward(x):
        return _GlobalMean.apply(x)
    return x.mean(dim=(2, 3))


def _conv(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int, groups: int, blocked: bool) -> torch.Tensor:
    """An undilated depthwise conv: through ``_DepthwiseCompiled`` where it applies (``_compiled_path``); else, with
    ``blocked`` and no compiled kernels, ``_Depthwise5x5`` where it is faster (a 5x5 kernel, stride 1, at least
    14x14, in the weight's dtype; measured slower at 7x7 and stride 2); else ``F.conv2d``."""
    if _compiled_path(x, weight):
        return _DepthwiseCompiled.apply(x, weight, stride, padding, 1)  # type: ignore[no-any-return]
    if (blocked and weight.shape[-1] == 5 and stride == 1 and x.device.type == "cpu" and min(x.shape[-2:]) >= 14
            and torch.is_grad_enabled() and weight.requires_grad and not torch.compiler.is_compiling()
            and x.dtype == weight.dtype and not torch.is_autocast_enabled("cpu")
            and is_channels_last(x)):
        return _Depthwise5x5.apply(x, weight, padding)
    return F.conv2d(x, weight, None, stride, padding, 1, groups)


def depthwise_conv(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int, dilation: int,
                   blocked: bool = False) -> torch.Tensor:
    """Depthwise conv of ``x`` (B, C, H, W) by ``weight`` (C, 1, k, k); dilation 2 via phases on the CPU.

    See ``DepthwiseConv2d`` for why and how; the phase form applies to 'same' padding (``k - 1``). ``blocked``
    (the derived network's convs) allows ``_Depthwise5x5``. The search's grouped convs leave it off: with the
    weights frozen for the architecture step it was no faster in a search step, 2026-11-30 (each 3x3 block copies
    its input window, and at the search's k*C channels those copies cost what the faster gradient saves). Both
    take ``_DepthwiseCompiled`` where ``cpu_kernels`` is built, a dilated stride-1 conv too (then without phases);
    the architect freezes the weights for the alphas' gradient, so that no custom backward computes a weight
    gradient nobody asked for.
    """
    groups = weight.shape[0]
    kernel = weight.shape[-1]
    if dilation == 1:
        return _conv(x, weight, stride, padding, groups, blocked)
    if dilation != 2 or x.device.type != "cpu" or padding != kernel - 1:
        return F.conv2d(x, weight, None, stride, padding, dilation, groups)
    if stride == 1 and _compiled_path(x, weight):
        return _DepthwiseCompiled.apply(x, weight, 1, padding, 2)  # type: ignore[no-any-return]
    pad = (kernel - 1) // 2
    if stride == 2:
        even = even_pixels(x)
        if _compiled_path(x, weight):  # one copy of a quarter of x, for the compiled path (channels-last only)
            even = even.contiguous(memory_format=torch.channels_last)
        return _conv(even, weight, 1, pad, groups, blocked)
    b, c, h, w = x.shape
    he, we = h + h % 2, w + w % 2
    # Work on the (B, H, W, C) view so channels_last inputs stay channels_last (oneDNN's fast path).
    if (he, we) != (h, w):
        x = F.pad(x, (0, we - w, 0, he - h))
    x = x.permute(0, 2, 3, 1)
    # phase (i, j) = x[..., i::2, j::2], stacked on the batch: (4B, H/2, W/2, C)
    phases = x.reshape(b, he // 2, 2, we // 2, 2, c).permute(2, 4, 0, 1, 3, 5).reshape(4 * b, he // 2, we // 2, c)
    y = _conv(phases.permute(0, 3, 1, 2), weight, 1, pad, groups, blocked).permute(0, 2, 3, 1)
    y = y.reshape(2, 2, b, he // 2, we // 2, c).permute(2, 3, 0, 4, 1, 5).reshape(b, he, we, c)
    return y[:, :h, :w].permute(0, 3, 1, 2)


class DilConv(nn.Sequential):
    """ReLU -> depthwise dilated conv -> pointwise conv -> BN.

    ``inplace_relu`` only where the input is a private intermediate (SepConv's second block).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int,
                 affine: bool, inplace_relu: bool = False) -> None:
        super().__init__(
            nn.ReLU(inplace=inplace_relu),
            DepthwiseConv2d(c_in, kernel, stride, padding, dilation),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked DilConv(dilation=1) blocks, the first with the stride (DARTS ``sep_conv``)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine, inplace_relu=True),
        )


class Zero(nn.Module):
    """The ``none`` operation: zeros of the output shape."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class _OffsetPixels(torch.autograd.Function):
    """``(B, C, H, W) -> (B, 2C, ceil(H/2), ceil(W/2))``: the pixels a 1x1 stride-2 conv reads, ``x[..., ::2, ::2]``
    in the first C channels and ``x[..., 1::2, 1::2]`` in the last C (zero where an odd size runs out, as the
    right/bottom padding of FactorizedReduce's shifted branch gives). One copy of half the input forward; backward
    writes each pixel of the input's gradient once (zeros where no conv reads), in the input's memory format."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def]
        b, c, h, w = x.shape
        fmt = _layout(x)
        out = torch.empty((b, 2 * c, (h + 1) // 2, (w + 1) // 2), dtype=x.dtype, device=x.device, memory_format=fmt)
        out[:, :c] = x[:, :, ::2, ::2]
        out[:, c:, : h // 2, : w // 2] = x[:, :, 1::2, 1::2]
        if h % 2:
            out[:, c:, h // 2:] = 0
        if w % 2:
            out[:, c:, :, w // 2:] = 0
        ctx.shape, ctx.fmt = x.shape, fmt
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        b, c, h, w = ctx.shape
        gx = torch.empty(ctx.shape, dtype=grad.dtype, device=grad.device, memory_format=ctx.fmt)
        gx[:, :, ::2, ::2] = grad[:, :c]
        gx[:, :, 1::2, 1::2] = grad[:, c:, : h // 2, : w // 2]
        gx[:, :, ::2, 1::2] = 0  # the two pixels of each 2x2 block that no conv reads: every pixel written once
        gx[:, :, 1::2, ::2] = 0
        return gx


def offset_pixels(x: torch.Tensor) -> torch.Tensor:
    """The inputs of FactorizedReduce's two offset 1x1 stride-2 convs, side by side in channels (``_OffsetPixels``
    when a gradient is wanted; plain slices, pad and cat otherwise, which ``torch.export`` traces as they are)."""
    if _custom_backward(x):
        return _OffsetPixels.apply(x)
    h, w = x.shape[-2:]
    shifted = F.pad(x[:, :, 1::2, 1::2], (0, w % 2, 0, h % 2))
    return torch.cat([x[:, :, ::2, ::2], shifted], dim=1)


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset 1x1 stride-2 convs, concatenated [!] c_out must be even.

    Computed as ReLU on the pixels the two convs read (``offset_pixels``: ReLU commutes with picking pixels, and
    the zero padding stays zero) and one 1x1 conv with ``groups=2`` whose weight is ``[conv_1; conv_2]``: the
    same maths and parameter names as ``relu``, ``conv_1(x)``, ``conv_2(pad(x[:, :, 1:, 1:]))`` and ``cat``, which
    read and wrote every pixel of the full-size input and its gradient several times (at (32, 64, 28, 28) on one
    CPU thread, forward and backward 15 ms against 6-7 ms channels-last, 22 ms against 8 ms NCHW).
    ``conv_1`` and ``conv_2`` hold the weights but are not called, so forward hooks on them do not fire: hook
    the FactorizedReduce itself.
    """

    def __init__(self, c_in: int, c_out: int, affine: bool) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even c_out, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._convs(self.relu(offset_pixels(x)))

    def on_relu(self, xr: torch.Tensor) -> torch.Tensor:
        """The same as ``self(x)`` given ``xr = relu(x)``, computed once for every reader of ``x``."""
        return self._convs(offset_pixels(xr))

    def _convs(self, pixels: torch.Tensor) -> torch.Tensor:
        """conv_1 on the first half of ``offset_pixels``' channels, conv_2 on the second, then BN."""
        return self.bn(F.conv2d(pixels, torch.cat([self.conv_1.weight, self.conv_2.weight]), groups=2))


class PoolBN(nn.Sequential):
    """3x3 pooling followed by BN, as DARTS' MixedOp adds to pool ops."""

    def __init__(self, kind: str, c: int, stride: int, affine: bool) -> None:
        pool: nn.Module
        if kind == "max":
            pool = nn.MaxPool2d(3, stride=stride, padding=1)
        else:
            pool = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        super().__init__(pool, BatchNorm2d(c, affine=affine))


@register_op("none")
def _none(c: int, stride: int, affine: bool) -> nn.Module:
    return Zero(stride)


@register_op("max_pool_3x3")
def _max_pool(c: int, stride: int, affine: bool) -> nn.Module:
    return PoolBN("max", c, stride, affine)


@register_op("avg_pool_3x3")
def _avg_pool(c: int, stride: int, affine: bool) -> nn.Module:
    return PoolBN("avg", c, stride, affine)


@register_op("skip_connect")
def _skip(c: int, stride: int, affine: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)


@register_op("sep_conv_3x3")
def _sep3(c: int, stride: int, affine: bool) -> nn.Module:
    return SepConv(c, c, 3, stride, 1, affine)


@register_op("sep_conv_5x5")
def _sep5(c: int, stride: int, affine: bool) -> nn.Module:
    return SepConv(c, c, 5, stride, 2, affine)


@register_op("dil_conv_3x3")
def _dil3(c: int, stride: int, affine: bool) -> nn.Module:
    return DilConv(c, c, 3, stride, 2, 2, affine)


@register_op("dil_conv_5x5")
def _dil5(c: int, stride: int, affine: bool) -> nn.Module:
    return DilConv(c, c, 5, stride, 4, 2, affine)


# The standard DARTS operation set, in DARTS' order.
PRIMITIVES: tuple[str, ...] = (
    "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
    "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
)
PARAMETER_FREE = frozenset({"none", "max_pool_3x3", "avg_pool_3x3", "skip_connect"})

# FairDARTS searches the DARTS set without ``none`` (7 operations): with independent sigmoids
# a zero op has no role (xiaomi-automl/FairDARTS, fairdarts/model_search.py builds its MixedOp
# from PRIMITIVES minus 'none'; Chu et al., ECCV 2020, section 4).
FAIRDARTS_PRIMITIVES: tuple[str, ...] = tuple(p for p in PRIMITIVES if p != "none")


def primitives_for(relaxation: str) -> tuple[str, ...]:
    """The candidate operations of a relaxation: 7 for ``sigmoid`` (FairDARTS), 8 for ``softmax`` (DARTS)."""
    if relaxation == "sigmoid":
        return FAIRDARTS_PRIMITIVES
    if relaxation == "softmax":
        return PRIMITIVES
    raise ValueError(f"relaxation {relaxation!r}: use sigmoid or softmax")
