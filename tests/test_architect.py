"""The second-order architecture gradient matches the exact hypergradient (catches pt.darts#34-class bugs)."""

from __future__ import annotations

import torch

from ssnas_core.search.architect import Architect


def _toy():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(5, 3, generator=g, dtype=torch.float64)
    w = torch.nn.Parameter(torch.randn(5, generator=g, dtype=torch.float64))
    a = torch.nn.Parameter(torch.randn(3, generator=g, dtype=torch.float64))

    def train_loss(w_: torch.Tensor, a_: torch.Tensor) -> torch.Tensor:
        return ((w_ - m @ torch.sigmoid(a_)) ** 2).sum() + 0.1 * (w_**4).sum()

    def val_loss(w_: torch.Tensor, a_: torch.Tensor) -> torch.Tensor:
        return (torch.sin(w_) * (m @ a_)).sum() + (a_**2 * w_[:3]).sum()

    return w, a, train_loss, val_loss


def test_second_order_gradient_matches_autograd_hypergradient() -> None:
    w, a, train_loss, val_loss = _toy()
    xi = 0.05
    # Exact: d/da L_val(w - xi * grad_w L_train(w, a), a), differentiating through the inner step.
    g_w = torch.autograd.grad(train_loss(w, a), w, create_graph=True)[0]
    exact = torch.autograd.grad(val_loss(w - xi * g_w, a), a)[0]

    architect = Architect([a], [w], torch.optim.SGD([a], lr=0.0), w01=0.0, order=2)
    w_before = w.detach().clone()
    architect.step(lambda: val_loss(w, a), lambda: train_loss(w, a), xi=xi)
    assert torch.allclose(a.grad, exact, rtol=1e-4, atol=1e-8), (a.grad, exact)
    assert torch.equal(w.detach(), w_before)  # the virtual step is undone exactly


def test_first_order_gradient_is_the_partial_derivative() -> None:
    w, a, train_loss, val_loss = _toy()
    architect = Architect([a], [w], torch.optim.SGD([a], lr=0.0), w01=0.0, order=1)
    architect.step(lambda: val_loss(w, a), lambda: train_loss(w, a), xi=0.05)
    assert torch.allclose(a.grad, torch.autograd.grad(val_loss(w, a), a)[0])


def test_zero_weight_gradient_gives_a_finite_step() -> None:
    w = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    a = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    architect = Architect([a], [w], torch.optim.SGD([a], lr=0.0), w01=1.0, order=2)
    out = architect.step(lambda: (a**2).sum() + 0 * w.sum(), lambda: (a**2).sum() + 0 * w.sum(), xi=0.1)
    assert torch.isfinite(a.grad).all() and torch.isfinite(out["arch"])
