"""The compiled CPU kernels (``ssnas_core.search_space.cpu_kernels``) against torch's own kernels, and the paths
that use them: the same values (float32 tolerances), the running statistics, the gradients asked for only.

They must be built wherever these tests run (CI: a C++ compiler and ninja); ``SSNAS_CPU_KERNELS=0`` skips them.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from ssnas_core.search_space import cpu_kernels
from ssnas_core.search_space.primitives import BatchNorm2d, depthwise_conv

pytestmark = pytest.mark.skipif(os.environ.get(cpu_kernels.ENV) == "0", reason="SSNAS_CPU_KERNELS=0")

CL = torch.channels_last


@pytest.fixture(scope="module")
def ops():
    module = cpu_kernels.kernels()
    assert module is not None, "cpu_kernels did not build (a C++ compiler and ninja are needed)"
    return module


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> None:
    """Equal up to float32 rounding, relative to the larger entries (sums of thousands of products)."""
    assert a.shape == b.shape
    assert (a - b).abs().max().item() <= rel * b.abs().max().item() + 1e-6, (a - b).abs().max().item()


@pytest.mark.parametrize("kernel,stride,padding,dilation", [
    (5, 1, 2, 1), (5, 2, 2, 1), (3, 1, 1, 1), (3, 1, 2, 2), (5, 1, 4, 2), (5, 2, 4, 2), (1, 1, 0, 1)])
@pytest.mark.parametrize("channels", [16, 21])  # one register block, and a remainder of 5 channels
def test_depthwise_weight_grad_matches_torch(ops, kernel, stride, padding, dilation, channels) -> None:
    gen = torch.Generator().manual_seed(kernel * 10 + stride + dilation)
    x = torch.randn(3, channels, 11, 9, generator=gen).contiguous(memory_format=CL)
    w = torch.randn(channels, 1, kernel, kernel, generator=gen)
    y = F.conv2d(x, w, None, stride, padding, dilation, channels)
    grad = torch.randn(y.shape, generator=gen).contiguous(memory_format=CL)
    ref = torch.ops.aten.convolution_backward(grad, x, w, None, [stride] * 2, [padding] * 2, [dilation] * 2, False,
                                              [0, 0], channels, [False, True, False])[1]
    _close(ops.dw_weight_grad(x, grad, kernel, stride, padding, dilation), ref)


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("shift", [0.0, 1000.0])  # a mean far from 0: the statistics must stay well conditioned
def test_batch_norm_matches_torch(ops, affine, shift) -> None:
    """Forward and backward against torch's in float64 on the same float32 inputs: no further from it than
    torch's own float32 kernels (or float32 rounding, relative to the largest entry)."""
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(4, 37, 6, 5, generator=gen) * 2 + shift).contiguous(memory_format=CL)
    grad = torch.randn(x.shape, generator=gen).contiguous(memory_format=CL)
    weight = torch.rand(37, generator=gen) + 0.5 if affine else None
    bias = torch.randn(37, generator=gen) if affine else None

    def torch_bn(dtype: torch.dtype) -> list[torch.Tensor]:
        w, b = (None if t is None else t.to(dtype) for t in (weight, bias))
        y, mean, invstd = torch.native_batch_norm(x.to(dtype), w, b, None, None, True, 0.1, 1e-5)
        back = torch.ops.aten.native_batch_norm_backward(grad.to(dtype), x.to(dtype), w, None, None, mean, invstd,
                                                         True, 1e-5, [True, True, True])
        return [y, mean, invstd, *back]

    exact, theirs = torch_bn(torch.float64), torch_bn(torch.float32)
    y, mean, invstd, var = ops.bn_forward(x, weight, bias, 1e-5)
    ours = [y, mean, invstd, *ops.bn_backward(grad, x, mean, invstd, weight)]
    for name, a, t, e in zip(("y", "mean", "invstd", "grad_x", "grad_weight", "grad_bias"), ours, theirs, exact):
        err, torch_err = (a.double() - e).abs().max().item(), (t.double() - e).abs().max().item()
        assert err <= max(2 * torch_err, 1e-5 * e.abs().max().item()), (name, err, torch_err)
    assert (var.double() - x.double().var(dim=(0, 2, 3))).abs().max() <= 1e-5 * 4  # unbiased, for the running var


def test_batch_norm_module_on_the_kernels_matches_torch_with_running_statistics(ops) -> None:
    """``primitives.BatchNorm2d`` with a per-channel scale (the search's mixing weights): output, every gradient
    and the running statistics as ``nn.BatchNorm2d`` and a product give them."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(6, 16, 7, 7, generator=gen).contiguous(memory_format=CL)
    upstream = torch.randn(x.shape, generator=gen)
    ours, ref = BatchNorm2d(16, affine=False), torch.nn.BatchNorm2d(16, affine=False)
    results = []
    for m in (ours, ref):
        xi = x.clone().requires_grad_(True)
        scale = torch.linspace(0.1, 1.0, 16).requires_grad_(True)
        out = m(xi, scale) if m is ours else m(xi) * scale.view(1, -1, 1, 1)
        if m is ours:
            assert type(out.grad_fn).__name__ == "_ChannelsLastBatchNormBackward"
        (out * upstream).sum().backward()
        results.append((out, xi.grad, scale.grad))
    for a, b in zip(*results):
        _close(a, b, 1e-4)
    _close(ours.running_mean, ref.running_mean, 1e-5)
    _close(ours.running_var, ref.running_var, 1e-5)


@pytest.mark.parametrize("kernel,stride,dilation", [(5, 1, 1), (5, 2, 1), (3, 1, 1), (3, 2, 1), (3, 1, 2),
                                                    (5, 1, 2), (5, 2, 2)])
def test_depthwise_conv_on_the_kernels_matches_torch(ops, kernel, stride, dilation) -> None:
    """Output and both gradients of ``depthwise_conv`` (through ``_DepthwiseCompiled``: a dilated conv without
    phases, an input gradient by the flipped kernel) against ``F.conv2d``'s; with a frozen weight, no weight
    gradient is computed."""
    gen = torch.Generator().manual_seed(5)
    padding = dilation * (kernel - 1) // 2
    x = torch.randn(4, 32, 12, 12, generator=gen).contiguous(memory_format=CL)
    w = torch.randn(32, 1, kernel, kernel, generator=gen)
    results = []
    for ours in (True, False):
        xi, wi = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        out = (depthwise_conv(xi, wi, stride, padding, dilation) if ours
               else F.conv2d(xi, wi, None, stride, padding, dilation, 32))
        if ours:
            assert "_DepthwiseCompiled" in type(out.grad_fn).__name__
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(6))
        (out * upstream).sum().backward()
        results.append((out, xi.grad, wi.grad))
    for a, b in zip(*results):
        _close(a, b, 1e-5)
    frozen = w.clone()
    xi = x.clone().requires_grad_(True)
    depthwise_conv(xi, frozen, stride, padding, dilation).sum().backward()
    assert xi.grad is not None and frozen.grad is None


def test_switched_off_by_the_environment() -> None:
    code = "from ssnas_core.search_space import cpu_kernels; print(cpu_kernels.kernels() is None)"
    env = {**os.environ, cpu_kernels.ENV: "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


@pytest.mark.parametrize("n,m", [(4, 3), (4, 0), (0, 2), (1, 1)])
def test_mixing_on_the_kernels_matches_torch(ops, n, m, monkeypatch) -> None:
    """``edge_group._Mix`` in one pass (``mix_forward``/``mix_backward``): the k edges' outputs and every
    input's gradient, as its torch form gives them; none for the inputs that need none."""
    from ssnas_core.search_space import edge_group

    k, c = 3, 16
    gen = torch.Generator().manual_seed(7)
    scaled = [torch.randn(2, k * c, 5, 4, generator=gen).contiguous(memory_format=CL) for _ in range(n)]
    shared = [torch.randn(2, c, 5, 4, generator=gen).contiguous(memory_format=CL) for _ in range(m)]
    ws = [torch.rand(1, k, 1, 1, 1, generator=gen) for _ in range(m)]
    upstream = [torch.randn(2, c, 5, 4, generator=gen) for _ in range(k)]
    results = []
    for compiled in (True, False):
        if not compiled:
            monkeypatch.setattr(cpu_kernels, "_module", None)
            monkeypatch.setattr(cpu_kernels, "_tried", True)
        inputs = [t.clone().requires_grad_(True) for t in (*scaled, *shared, *ws)]
        outs = edge_group._Mix.apply(n, k, *inputs)
        assert len(outs) == k and all(o.shape == (2, c, 5, 4) for o in outs)
        sum((o * u).sum() for o, u in zip(outs, upstream)).backward()
        results.append([*outs, *(t.grad for t in inputs)])
    for a, b in zip(*results):
        _close(a, b, 1e-5)
    if n and m:  # the weights frozen (the weight step): no gradient computed for them
        inputs = [t.clone().requires_grad_(True) for t in (*scaled, *shared)]
        outs = edge_group._Mix.apply(n, k, *inputs, *ws)
        sum(o.sum() for o in outs).backward()
        assert all(t.grad is not None for t in inputs) and all(w.grad is None for w in ws)
