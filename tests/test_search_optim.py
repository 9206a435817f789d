"""The search step is ready for CUDA graph capture: torch's updates without host syncs, static batch buffers.

Checked on the CPU: the optimisers against torch's, checkpoints of torch's optimisers loading into ours, and
a dispatch-counting mode that sees every aten call of a step and finds no ``_local_scalar_dense`` (what
``.item()``, ``float(t)`` and ``bool(t)`` dispatch: a host sync on a GPU, and a value a graph would freeze).
"""

from __future__ import annotations

import collections
import copy
from typing import Any, Callable

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ssnas_core.search.optim import DeviceAdam, DeviceSGD

from .tiny import search_engine


def _params(dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(5, 3, dtype=dtype, generator=gen).requires_grad_(),
            torch.randn(4, dtype=dtype, generator=gen).requires_grad_()]


def _train(opt: torch.optim.Optimizer, params: list[torch.Tensor], steps: int, seed: int,
           lr: Callable[[int], float] | None = None) -> None:
    gen = torch.Generator().manual_seed(seed)
    for i in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, dtype=p.dtype, generator=gen)
        if lr is not None:
            if isinstance(opt, DeviceSGD):
                opt.set_lr(lr(i))
            else:
                for group in opt.param_groups:
                    group["lr"] = lr(i)
        opt.step()


def _schedule(i: int) -> float:
    return 0.1 / (i + 1)


def test_device_sgd_is_torch_sgd_with_momentum_weight_decay_and_a_changing_lr() -> None:
    ours, theirs = _params(), _params()
    _train(DeviceSGD(ours, lr=0.1, momentum=0.9, weight_decay=3e-4), ours, 6, 0, _schedule)
    _train(torch.optim.SGD(theirs, lr=0.1, momentum=0.9, weight_decay=3e-4, foreach=True), theirs, 6, 0, _schedule)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-14)
    assert not torch.equal(ours[0], _params()[0])


def test_device_adam_is_torch_adam() -> None:
    ours, theirs = _params(), _params()
    _train(DeviceAdam(ours, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3), ours, 8, 0)
    _train(torch.optim.Adam(theirs, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3, foreach=True), theirs, 8, 0)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
    assert not torch.equal(ours[0], _params()[0])


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_a_checkpoint_of_torchs_optimiser_continues_in_ours(kind: str) -> None:
    def make(params: list[torch.Tensor], torch_one: bool) -> torch.optim.Optimizer:
        if kind == "sgd":
            return (torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=3e-4, foreach=True) if torch_one
                    else DeviceSGD(params, lr=0.05, momentum=0.9, weight_decay=3e-4))
        return (torch.optim.Adam(params, lr=3e-3, betas=(0.5, 0.999), foreach=True) if torch_one
                else DeviceAdam(params, lr=3e-3, betas=(0.5, 0.999)))

    before = _params()
    old = make(before, True)
    _train(old, before, 3, 0)
    state: dict[str, Any] = copy.deepcopy(old.state_dict())  # as torch.save + torch.load give it
    ours, theirs = [p.detach().clone().requires_grad_() for p in before], before
    resumed = make(ours, False)
    resumed.load_state_dict(state)
    _train(resumed, ours, 3, 1)
    _train(old, theirs, 3, 1)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


class _Syncs(TorchDispatchMode):
    """Counts the aten calls that read a tensor's value on the host."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: collections.Counter[str] = collections.Counter()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.total += 1
        if func.overloadpacket.__name__ in ("_local_scalar_dense", "equal", "is_nonzero", "nonzero"):
            self.calls[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(("relaxation", "ssl", "order"),
                         [("sigmoid", "barlow-twins", 1), ("sigmoid", "barlow-twins", 2), ("softmax", "simclr", 2)])
def test_a_search_step_makes_no_host_sync(relaxation: str, ssl: str, order: int) -> None:
    engine = search_engine(**{"search.relaxation": relaxation, "search.ssl": ssl, "search.arch_order": order})
    aug = torch.Generator().manual_seed(0)
    batches = list(engine._batches(0))
    engine.step(batches[0], 0.025, aug)  # the first step creates the optimisers' state
    with _Syncs() as seen:
        engine.step(batches[1], 0.02, aug)
    assert seen.total > 500  # the mode saw the step
    assert not seen.calls, dict(seen.calls)


def test_the_captured_step_reads_its_batch_and_learning_rate_from_fixed_device_tensors() -> None:
    engine = search_engine()
    aug = torch.Generator().manual_seed(0)
    batches = list(engine._batches(0))
    addresses = [t.data_ptr() for t in (*engine.static_batch, engine.w_optimizer.lr)]
    engine.step(batches[0], 0.025, aug)
    weights = [p.detach().clone() for p in engine.weights]
    alphas = [a.detach().clone() for a in engine.supernet.alphas()]
    # A new batch and learning rate reach the step through the same tensors, as a replayed graph would see them.
    for buffer, value in zip(engine.static_batch, batches[1]):
        buffer.copy_(value)
    engine.w_optimizer.set_lr(0.0)
    engine.captured_step(aug)
    assert [t.data_ptr() for t in (*engine.static_batch, engine.w_optimizer.lr)] == addresses
    assert all(torch.equal(a, b) for a, b in zip(weights, engine.weights))  # lr 0: the weights stay
    assert not all(torch.equal(a, b) for a, b in zip(alphas, engine.supernet.alphas()))  # the alphas moved
    engine.w_optimizer.set_lr(0.025)
    engine.captured_step(aug)
    assert not all(torch.equal(a, b) for a, b in zip(weights, engine.weights))
