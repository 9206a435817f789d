"""Focal loss, logit adjustment and LDAM match their papers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssnas_core.config import FinetuneConfig
from ssnas_core.errors import ConfigError
from ssnas_core.finetune.losses import make_criterion
from ssnas_core.losses.focal import FocalLoss, SigmoidFocalLoss
from ssnas_core.losses.ldam import LDAMLoss
from ssnas_core.losses.logit_adjusted import LogitAdjustment


def test_focal_with_gamma_zero_and_no_alpha_is_cross_entropy() -> None:
    logits, y = torch.randn(16, 5), torch.randint(0, 5, (16,))
    assert FocalLoss(0.0)(logits, y).item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    target = torch.randint(0, 2, (16, 5)).float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    assert SigmoidFocalLoss(0.0)(logits, target).item() == pytest.approx(bce.item(), rel=1e-6)


def test_focal_down_weights_easy_examples_and_alpha_weights_classes() -> None:
    easy, hard = torch.tensor([[4.0, 0.0]]), torch.tensor([[0.2, 0.0]])
    y = torch.tensor([0])
    ce_ratio = F.cross_entropy(hard, y) / F.cross_entropy(easy, y)
    assert (FocalLoss(2.0)(hard, y) / FocalLoss(2.0)(easy, y)).item() > ce_ratio.item()
    alpha = torch.tensor([3.0, 1.0])
    assert FocalLoss(2.0, alpha)(hard, y).item() == pytest.approx(3 * FocalLoss(2.0)(hard, y).item(), rel=1e-6)


@pytest.mark.parametrize("gamma", [0.3, 0.5, 0.9, 2.0])
def test_focal_gradient_is_finite_on_a_perfectly_classified_sample(gamma: float) -> None:
    """With 0 < gamma < 1, (1 - p)^gamma has an infinite slope at p = 1: the backward pass gave NaN."""
    logits = torch.tensor([[60.0, -60.0], [0.3, 0.1]], requires_grad=True)  # row 0: p == 1 in float32
    FocalLoss(gamma)(logits, torch.tensor([0, 1])).backward()
    assert torch.isfinite(logits.grad).all()
    multi = torch.tensor([[60.0, -60.0, 0.2]], requires_grad=True)
    SigmoidFocalLoss(gamma)(multi, torch.tensor([[1.0, 0.0, 1.0]])).backward()
    assert torch.isfinite(multi.grad).all()
    assert FocalLoss(gamma)(torch.tensor([[2.0, 0.0]]), torch.tensor([0])).item() == pytest.approx(
        -((1 - torch.sigmoid(torch.tensor(2.0))) ** gamma * torch.log(torch.sigmoid(torch.tensor(2.0)))).item(),
        rel=1e-6)  # the value away from p = 1 is unchanged


def test_logit_adjustment_tau_zero_changes_nothing_and_eval_uses_plain_logits() -> None:
    logits = torch.randn(4, 3)
    prior = torch.tensor([0.7, 0.2, 0.1])
    assert torch.equal(LogitAdjustment(prior, tau=0.0)(logits), logits)
    la = LogitAdjustment(prior, tau=1.0).eval()
    assert torch.equal(la(logits), logits)


def test_logit_adjusted_training_shifts_decisions_toward_rare_classes() -> None:
    # Minimising CE on adjusted logits f + log(prior) leaves f with a bias of -log(prior): rare classes win ties.
    prior = torch.tensor([0.9, 0.1])
    bias = torch.zeros(2, requires_grad=True)
    la = LogitAdjustment(prior, tau=1.0).train()
    y = torch.tensor([0] * 90 + [1] * 10)
    opt = torch.optim.SGD([bias], lr=1.0)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(la(bias.expand(100, 2)), y).backward()
        opt.step()
    plain = torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([plain], lr=1.0)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(plain.expand(100, 2), y).backward()
        opt.step()
    assert (bias[1] - bias[0]).item() > (plain[1] - plain[0]).item() + 1.0
    assert abs((bias[1] - bias[0]).item()) < 0.1  # the balanced (Bayes-optimal for balanced error) decision


def test_zero_prior_is_refused() -> None:
    with pytest.raises(ValueError, match="prior"):
        LogitAdjustment(torch.tensor([1.0, 0.0]), tau=1.0)
    with pytest.raises(ConfigError, match="no training images"):
        make_criterion(FinetuneConfig(), np.array([10, 0]), 10, multilabel=False)


def test_multilabel_logit_adjustment_uses_log_odds() -> None:
    la = LogitAdjustment(torch.tensor([0.5, 0.2]), tau=1.0, multilabel=True).train()
    out = la(torch.zeros(1, 2))
    assert out[0, 0].item() == pytest.approx(0.0) and out[0, 1].item() == pytest.approx(np.log(0.25), rel=1e-6)


def test_ldam_margins_favour_rare_classes_and_drw_switches_on() -> None:
    loss = LDAMLoss(np.array([1000, 10]))
    assert loss.margins[1] == pytest.approx(0.5) and loss.margins[0] < loss.margins[1]
    loss.set_epoch(10, 100)
    assert not loss.reweight
    loss.set_epoch(80, 100)
    assert loss.reweight


@pytest.mark.parametrize("name", ["ce", "focal", "focal-la", "cb-focal", "ldam-drw"])
def test_every_loss_gives_a_finite_value(name) -> None:
    cfg = FinetuneConfig(loss=name)
    criterion, adjust = make_criterion(cfg, np.array([90, 10]), 100, multilabel=False)
    adjust.train()
    value = criterion(adjust(torch.randn(8, 2)), torch.randint(0, 2, (8,)))
    assert torch.isfinite(value)
