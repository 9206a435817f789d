"""CPU speed paths of training, checked for what they must keep (the maths) and what they must do (speed is
measured by scripts/bench_search.py, not here):

* ``primitives.BatchNorm2d`` on a channels-last input trains through ``_ChannelsLastBatchNorm``, whose backward
  first copies the gradient into the input's layout: the same values as torch's own batch norm.
* ``primitives.FactorizedReduce`` runs its two offset 1x1 stride-2 convs as one grouped conv on the pixels they
  read: the same values as the straightforward ReLU, two convs (one on the shifted, padded input) and cat.
* ``DerivedNetwork`` computes one ReLU per state for the two cells that read it (``FixedCell.on_relu``): the
  same values as each cell's own preprocessing ReLU.
* ``primitives.depthwise_conv`` computes a stride-1 5x5 depthwise weight gradient on a channels-last CPU input
  as four 3x3 ones (``_Depthwise5x5``): the same values as torch's convolution backward.
* ``primitives.depthwise_conv`` at stride 2 and dilation 2 reads ``x[..., ::2, ::2]`` through ``_EvenPixels``:
  the same values as torch's dilated conv, and a gradient in the input's layout.
* ``primitives.global_mean`` (the networks' pooling before the head): the same values and gradient as
  ``x.mean(dim=(2, 3))``, the gradient in the input's layout.
* ``edge_group._Mix`` (the search's mixing): the weighted sum of the edges' outputs, and a gradient in the
  per-edge outputs' layout.
* ``allocator.retain_freed_memory`` keeps a training step's freed activations in the process: a fine-tune step
  stops page-faulting them in afresh.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from ssnas_core.search_space.primitives import BatchNorm2d, FactorizedReduce, depthwise_conv, global_mean

from .oracle_cells import factorized_reduce_as_written

ROOT = Path(__file__).resolve().parents[1]


def test_channels_last_batch_norm_matches_torch_on_a_sliced_gradient() -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 6, 5, 5, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    upstream = torch.randn(8, 12, 5, 5, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    for affine in (True, False):
        ours, ref = BatchNorm2d(6, affine=affine).double(), nn.BatchNorm2d(6, affine=affine).double()
        if affine:
            with torch.no_grad():
                for m in (ours, ref):
                    m.weight.copy_(torch.linspace(0.5, 1.5, 6))
                    m.bias.copy_(torch.linspace(-1, 1, 6))
        grads = []
        for m in (ours, ref):
            xi = x.clone().requires_grad_(True)
            out = m(xi)
            # a cell's torch.cat hands a node a channel slice of its output's gradient: not contiguous
            (out * upstream[:, 3:9]).sum().backward()
            grads.append([xi.grad] + ([m.weight.grad, m.bias.grad] if affine else []))
            assert out.is_contiguous(memory_format=torch.channels_last)
            if m is ours:
                assert type(out.grad_fn).__name__ == "_ChannelsLastBatchNormBackward"  # the path under test
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(ours.running_mean, ref.running_mean)
        torch.testing.assert_close(ours.running_var, ref.running_var)


def test_factorized_reduce_matches_the_two_offset_convs() -> None:
    """Both layouts, even and odd sizes (the shifted branch's zero padding): outputs, the input's and every
    parameter's gradient in training, and outputs in evaluation (the export path)."""
    torch.manual_seed(0)
    for memory_format in (torch.channels_last, torch.contiguous_format):
        for h, w in ((8, 8), (7, 7), (7, 6), (6, 5)):
            m = FactorizedReduce(6, 4, affine=True).double()
            x = torch.randn(3, 6, h, w, dtype=torch.float64).contiguous(memory_format=memory_format)
            x.requires_grad_(True)
            out, ref = m(x), factorized_reduce_as_written(m, x)
            assert out.shape == (3, 4, (h + 1) // 2, (w + 1) // 2)
            torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
            # the derived network's form, given the ReLU it shares between a state's readers
            torch.testing.assert_close(m.on_relu(torch.relu(x)), ref, rtol=1e-10, atol=1e-12)
            upstream = torch.randn_like(out)
            ours = torch.autograd.grad(out, [x, *m.parameters()], upstream)
            theirs = torch.autograd.grad(ref, [x, *m.parameters()], upstream)
            for a, b in zip(ours, theirs):
                torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
            assert ours[0].is_contiguous(memory_format=memory_format)  # the gradient keeps the input's layout
            m.eval()
            with torch.no_grad():
                torch.testing.assert_close(m(x), factorized_reduce_as_written(m, x), rtol=1e-10, atol=1e-12)


def test_derived_network_shares_each_states_relu_between_its_two_readers() -> None:
    """The network against its cells run one after the other with their own ReLUs (``FixedCell.forward``):
    outputs and every parameter's gradient in float64, a reduction cell after a reduction cell included."""
    from ssnas_core.search_space.genotype import Genotype
    from ssnas_core.search_space.network import DerivedNetwork

    genes = [["sep_conv_3x3", 0, 2], ["skip_connect", 1, 2], ["dil_conv_3x3", 0, 3], ["max_pool_3x3", 2, 3]]
    genotype = Genotype.from_json(json.dumps({"normal": genes, "reduce": genes, "n_nodes": 2}))
    torch.manual_seed(0)
    net = DerivedNetwork(genotype, c_in=1, c=4, n_cells=4, image_size=12, n_classes=3).double()
    x = torch.randn(5, 1, 12, 12, dtype=torch.float64)

    def cell_by_cell(x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = net.stem(x)
        for cell in net.cells:
            s0, s1 = s1, cell(s0, s1)
        return net.head(s1.mean(dim=(2, 3)))

    ours, ref = net(x), cell_by_cell(x)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    upstream = torch.randn_like(ours)
    params = list(net.parameters())
    for a, b in zip(torch.autograd.grad(ours, params, upstream), torch.autograd.grad(ref, params, upstream)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_depthwise_5x5_weight_gradient_in_3x3_blocks_matches_torch() -> None:
    """Square and not, even and odd sizes, dilation 1 and 2 (whose phases are stride-1 convs), float64."""
    torch.manual_seed(0)
    for (h, w), dilation in (((14, 14), 1), ((15, 17), 1), ((28, 28), 2), ((29, 30), 2)):
        x = torch.randn(3, 4, h, w, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        weight = torch.randn(4, 1, 5, 5, dtype=torch.float64, requires_grad=True)
        padding = 2 * dilation
        out = depthwise_conv(x, weight, 1, padding, dilation, blocked=True)
        names = []
        node = out.grad_fn
        while node is not None and not names:  # the path under test is on the graph
            names = [type(node).__name__] if "Depthwise5x5" in type(node).__name__ else []
            node = node.next_functions[0][0] if node.next_functions else None
        assert names, "the 5x5 path was not taken"
        ref = nn.functional.conv2d(x, weight, None, 1, padding, dilation, 4)
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
        upstream = torch.randn_like(out)
        ours, theirs = (torch.autograd.grad(y, [x, weight], upstream) for y in (out, ref))
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_stride_2_dilated_depthwise_conv_matches_torch_and_keeps_the_gradient_layout() -> None:
    """Even and odd sizes, 3x3 and 5x5, channels-last and NCHW, float64. A channels-last input must get a
    channels-last gradient (autograd's own slice backward gives an NCHW one, which the ReLU before the conv then
    meets on a slow generic path)."""
    torch.manual_seed(0)
    for (h, w), kernel, layout in (((14, 14), 3, torch.channels_last), ((15, 17), 5, torch.channels_last),
                                   ((14, 15), 5, torch.contiguous_format)):
        x = torch.randn(3, 4, h, w, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_(True)
        weight = torch.randn(4, 1, kernel, kernel, dtype=torch.float64, requires_grad=True)
        padding = kernel - 1
        out = depthwise_conv(x, weight, 2, padding, 2, blocked=True)
        ref = nn.functional.conv2d(x, weight, None, 2, padding, 2, 4)
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
        upstream = torch.randn_like(out)
        ours, theirs = (torch.autograd.grad(y, [x, weight], upstream) for y in (out, ref))
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
        assert ours[0].is_contiguous(memory_format=layout), (h, w, kernel, layout, ours[0].stride())


def test_global_mean_matches_torch_and_keeps_the_gradient_layout() -> None:
    torch.manual_seed(0)
    for layout in (torch.channels_last, torch.contiguous_format):
        x = torch.randn(3, 5, 7, 6, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_(True)
        out, ref = global_mean(x), x.mean(dim=(2, 3))
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-14)
        upstream = torch.randn_like(out)
        ours, theirs = (torch.autograd.grad(y, x, upstream)[0] for y in (out, ref))
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)
        assert ours.is_contiguous(memory_format=layout), (layout, ours.stride())
    # a channel slice of a channels-last tensor (contiguous in neither format) gets a channels-last gradient
    x = torch.randn(3, 8, 7, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    part = x[:, 2:7].requires_grad_(True)
    grad = torch.autograd.grad(global_mean(part), part, torch.ones(3, 5, dtype=torch.float64))[0]
    assert grad.is_contiguous(memory_format=torch.channels_last), grad.stride()


def test_a_5x5_sep_conv_trains_under_bf16_autocast() -> None:
    """Autocast does not reach inside a custom Function: the blocked path would hand oneDNN a bf16 gradient and
    a float32 weight (a crash with `--amp bf16` on the CPU), so under autocast it stays with torch's conv."""
    from ssnas_core.search_space.primitives import SepConv

    op = SepConv(8, 8, 5, 1, 2, affine=True).to(memory_format=torch.channels_last)
    x = torch.randn(2, 8, 14, 14).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = op(x)
    out.float().sum().backward()
    assert out.dtype == torch.bfloat16 and x.grad is not None and op[0][1].weight.grad is not None


FAULTS = """
import resource, sys, torch
sys.path.insert(0, sys.argv[1])
torch.set_num_threads(1)
from tests.tiny import finetune_engine
engine = finetune_engine()
engine.run_epoch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
engine.run_epoch()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / engine.steps_per_epoch)
"""


def _faults_per_step(tuning: str) -> float:
    env = {**os.environ, "SSNAS_MALLOC_TUNING": tuning, "OMP_NUM_THREADS": "1"}
    for var in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        env.pop(var, None)
    out = subprocess.run([sys.executable, "-c", FAULTS, str(ROOT)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return float(out.stdout.strip().splitlines()[-1])


def test_a_cpu_fine_tune_step_keeps_its_freed_activations() -> None:
    tuned, untuned = _faults_per_step("1"), _faults_per_step("0")
    assert untuned > 3000, untuned  # glibc's defaults: the step's activations come back as fresh pages
    assert tuned < untuned / 5, (tuned, untuned)


def test_search_mixing_matches_the_weighted_sum_and_keeps_the_gradient_layout() -> None:
    """``edge_group._Mix``: the k edges' outputs are ``sum_p y_p`` (per-edge outputs, already weighted by their
    BN) ``+ sum_s w_s * y_s`` (shared outputs); the per-edge outputs get the gradient in their own layout even
    when the k edges' gradients arrive in another (a stack of them would keep theirs, and the per-edge outputs'
    BN backward would then take its slow path)."""
    from ssnas_core.search_space.edge_group import _Mix

    torch.manual_seed(0)
    b, k, c, h, w = 3, 4, 5, 6, 6
    for layout, grad_layout in ((torch.channels_last, torch.contiguous_format),
                                (torch.channels_last, torch.channels_last),
                                (torch.contiguous_format, torch.channels_last)):
        scaled = [torch.randn(b, k * c, h, w, dtype=torch.float64).contiguous(memory_format=layout)
                  .requires_grad_() for _ in range(2)]
        shared = [torch.randn(b, c, h, w, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_()]
        weights = [torch.rand(1, k, 1, 1, 1, dtype=torch.float64, requires_grad=True)]
        upstream = [torch.randn(b, c, h, w, dtype=torch.float64).contiguous(memory_format=grad_layout)
                    for _ in range(k)]
        outs = _Mix.apply(2, k, *scaled, *shared, *weights)
        want = sum(y.unflatten(1, (k, c)) for y in scaled) + shared[0].unsqueeze(1) * weights[0]
        assert len(outs) == k
        for e in range(k):
            torch.testing.assert_close(outs[e], want[:, e])
        seen: list[torch.Tensor] = []  # the gradients the per-edge outputs receive
        hooks = [y.register_hook(seen.append) for y in scaled]
        got = torch.autograd.grad(outs, scaled + shared + weights, upstream)
        for hook in hooks:
            hook.remove()
        ref = torch.autograd.grad(want.unbind(1), scaled + shared + weights, upstream)
        for g, r in zip(got, ref):
            torch.testing.assert_close(g, r)
        assert len(seen) == len(scaled)
        for g, y in zip(seen, scaled):
            assert g.stride() == y.stride(), (layout, g.stride(), y.stride())
