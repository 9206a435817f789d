"""The losses match their papers."""

import math

import pytest
import torch

from ssnas_core.losses.barlow_twins import BarlowTwinsLoss, off_diagonal
from ssnas_core.losses.nt_xent import NTXentLoss
from ssnas_core.losses.zero_one import zero_one_loss


def test_barlow_twins_equals_hand_computed_value() -> None:
    # Columns normalise to [-1, 1], [1, -1] (z1) and [-1, 1], [-1, 1] (z2), so
    # C = [[1, 1], [-1, -1]]: on-diagonal (1-1)^2 + (-1-1)^2 = 4, off-diagonal 1 + 1 = 2.
    z1 = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    z2 = torch.tensor([[0.0, 1.0], [2.0, 5.0]])
    loss = BarlowTwinsLoss(lambd=0.5)
    on, off = loss.terms(z1, z2)
    assert on.item() == pytest.approx(4.0, abs=1e-4)
    assert off.item() == pytest.approx(2.0, abs=1e-4)
    assert loss(z1, z2).item() == pytest.approx(4.0 + 0.5 * 2.0, abs=1e-4)


def test_barlow_twins_identical_views_have_zero_on_diagonal_term() -> None:
    z = torch.randn(16, 8)
    on, off = BarlowTwinsLoss().terms(z, z)
    assert on.item() < 1e-6
    assert off.item() > 0  # random features are correlated by chance: the off-diagonal term is present
    on_diff, _ = BarlowTwinsLoss().terms(z, torch.randn(16, 8))
    assert on_diff.item() > 1.0


def test_barlow_twins_invariant_to_affine_rescaling_and_rejects_batch_of_one() -> None:
    z1, z2 = torch.randn(32, 6), torch.randn(32, 6)
    loss = BarlowTwinsLoss(0.01)
    assert loss(z1, z2).item() == pytest.approx(loss(z1, 2 * z2 + 4).item(), rel=1e-4)
    with pytest.raises(ValueError, match="at least 2"):
        loss(z1[:1], z2[:1])


def test_off_diagonal_takes_every_element_but_the_diagonal() -> None:
    c = torch.arange(9.0).view(3, 3)
    assert sorted(off_diagonal(c).tolist()) == [1, 2, 3, 5, 6, 7]


def test_zero_one_loss_value_and_gradient() -> None:
    alpha = torch.tensor([[0.0, 2.0]], requires_grad=True)
    loss = zero_one_loss([alpha])
    s = 1 / (1 + math.exp(-2.0))
    assert loss.item() == pytest.approx(-((s - 0.5) ** 2) / 2, rel=1e-6)
    loss.backward()
    # d/da of -1/N (sigmoid(a) - 0.5)^2 = -2/N (sigmoid(a) - 0.5) sigmoid(a) (1 - sigmoid(a))
    assert alpha.grad is not None
    assert alpha.grad[0, 0].item() == pytest.approx(0.0, abs=1e-7)
    assert alpha.grad[0, 1].item() == pytest.approx(-(s - 0.5) * s * (1 - s), rel=1e-5)


def test_zero_one_loss_is_minimal_at_zero_and_one() -> None:
    at_half = zero_one_loss([torch.zeros(4, 3)])
    at_ends = zero_one_loss([torch.tensor([[-20.0, 20.0]])])
    assert at_half.item() == 0.0 and at_ends.item() == pytest.approx(-0.25, abs=1e-6)


def test_nt_xent_prefers_matching_views() -> None:
    z = torch.randn(8, 16)
    loss = NTXentLoss(0.5)
    assert loss(z, z).item() < loss(z, torch.randn(8, 16)).item()
    with pytest.raises(ValueError):
        NTXentLoss(0.0)
