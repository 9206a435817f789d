"""Loss fidelity: LDAM on a normalised head, logit adjustment both ways (ce-la, post-hoc), class-balanced focal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssnas_core.baselines.models import create_baseline
from ssnas_core.config import FinetuneConfig
from ssnas_core.errors import ConfigError
from ssnas_core.evaluation.metrics import MULTILABEL
from ssnas_core.finetune.losses import class_prior, make_criterion, prepare_head
from ssnas_core.finetune.posthoc import fit_tau, keeps_label_accuracy, prior_term, scores
from ssnas_core.losses.focal import ClassBalancedSigmoidFocalLoss, FocalLoss
from ssnas_core.losses.ldam import LDAMLoss, NormedLinear, class_balanced_weights
from ssnas_core.search_space.network import DerivedNetwork
from ssnas_core.search_space.supernet import Supernet


def _fit_linear(criterion: torch.nn.Module, adjust: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, n_in: int,
                n_out: int, max_iter: int, rounds: int = 1, **tolerances: float) -> torch.nn.Linear:
    """A linear model trained to convergence (LBFGS, strong Wolfe) on ``criterion(adjust(lin(x)), y)``."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(n_in, n_out)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe", **tolerances)
    adjust.train()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        value = criterion(adjust(lin(x)), y)
        value.backward()
        return value

    for _ in range(rounds):
        opt.step(closure)
    return lin


@pytest.mark.parametrize("kind", ["derived", "resnet32", "resnet18"])
def test_ldam_drw_gets_a_normalised_head_whose_logits_are_scaled_cosines(kind: str) -> None:
    torch.manual_seed(0)
    net = (DerivedNetwork(Supernet(1, 4).genotype(), 1, c=4, n_classes=3) if kind == "derived"
           else create_baseline(kind, 1, 3, 28))
    assert prepare_head(net, FinetuneConfig(loss="focal-la")) is net and not any(
        isinstance(m, NormedLinear) for m in net.modules())
    net = prepare_head(net, FinetuneConfig(loss="ldam-drw"))
    heads = [m for m in net.modules() if isinstance(m, NormedLinear)]
    assert len(heads) == 1 and not any(isinstance(m, torch.nn.Linear) for m in net.modules())
    head = heads[0]
    features = 1e3 * torch.randn(64, head.weight.shape[1])  # far from unit norm: the cosine must not care
    cos = head.cosine(features)
    assert cos.abs().max() <= 1 + 1e-6
    aligned = head.cosine(1e3 * head.weight.detach())  # a feature along class c's weight: cosine 1 for c
    assert torch.allclose(aligned.diagonal(), torch.ones(3), atol=1e-5)
    assert torch.allclose(head(features), 30.0 * cos)
    logits = net.eval()(torch.rand(4, 1, 28, 28))
    assert logits.shape == (4, 3) and logits.abs().max() <= 30.0 + 1e-4


def test_ldam_margin_asks_more_of_rare_classes() -> None:
    counts = np.array([1000, 100, 10])
    loss = LDAMLoss(counts)
    assert loss.margins[2] == pytest.approx(0.5) and loss.margins[0] < loss.margins[1] < loss.margins[2]
    cos = torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.0, 0.5]])  # equally confident, right, on a head and a tail image
    per_class = [loss(30 * cos[i:i + 1], torch.tensor([c])).item() for i, c in enumerate((0, 2))]
    plain = F.cross_entropy(30 * cos[:1], torch.tensor([0])).item()
    assert per_class[1] > per_class[0] > plain  # the tail image pays a larger margin
    # the reference's form: CE(s * (cos - m_y)) on the true class
    expected = F.cross_entropy(30 * (cos - F.one_hot(torch.tensor([0, 2]), 3) * loss.margins), torch.tensor([0, 2]))
    assert loss(30 * cos, torch.tensor([0, 2])).item() == pytest.approx(expected.item(), rel=1e-6)


def _fit_1d(loss: str, n0: int = 18000, n1: int = 2000) -> tuple[torch.nn.Linear, torch.Tensor, torch.Tensor]:
    """A linear 2-class model on 1-D Gaussians (means -1 / +1, prior 0.9 / 0.1), trained to convergence."""
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(n0, generator=g) - 1, torch.randn(n1, generator=g) + 1])[:, None]
    y = torch.cat([torch.zeros(n0, dtype=torch.long), torch.ones(n1, dtype=torch.long)])
    criterion, adjust = make_criterion(FinetuneConfig(loss=loss), np.array([n0, n1]), n0 + n1, False)
    lin = _fit_linear(criterion, adjust, x, y, 1, 2, max_iter=500, rounds=5, tolerance_grad=1e-10,
                      tolerance_change=1e-12)
    return lin, x, y


def _errors(pred: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    return tuple((pred[y == c] != c).float().mean().item() for c in (0, 1))  # type: ignore[return-value]


def test_ce_la_reaches_the_balanced_rule_where_focal_la_over_corrects() -> None:
    """The measured explanation of docs/results.md: focal's gamma 2 flattens probabilities toward 0.5, so the
    same tau * log(prior) moves the decision much further than under CE (Bayes errors here: 0.16 / 0.16)."""
    clin, x, y = _fit_1d("ce")
    e_ce = _errors(clin(x).argmax(1), y)
    lin, x, y = _fit_1d("ce-la")
    e_ce_la = _errors(lin(x).argmax(1), y)
    flin, _, _ = _fit_1d("focal-la")
    e_focal_la = _errors(flin(x).argmax(1), y)
    assert e_ce[1] > 0.45  # plain CE: the rare class mostly missed
    assert abs(e_ce_la[0] - 0.16) < 0.03 and abs(e_ce_la[1] - 0.16) < 0.03
    assert e_focal_la[0] > 0.6 and e_focal_la[1] < 0.02  # over-corrected toward the rare class
    # post-hoc adjustment fitted on balanced accuracy undoes it with a negative tau
    with torch.no_grad():
        logits = flin(x).numpy()
    term = prior_term(np.array([0.9, 0.1]), False)
    tau, _ = fit_tau(y.numpy(), logits, term, "binary-class", "balanced_acc")
    fixed = _errors(torch.as_tensor(scores(logits, tau * term, False)).argmax(1), y)
    assert tau < 0 and abs(fixed[0] - fixed[1]) < 0.05


def test_post_hoc_tau_of_a_calibrated_model_is_near_one() -> None:
    """Menon et al.: on true posteriors under the training prior, balanced error is best at tau = 1."""
    rng = np.random.default_rng(0)
    n0, n1 = 27000, 3000
    x = np.concatenate([rng.normal(-1, 1, n0), rng.normal(1, 1, n1)])
    y = np.concatenate([np.zeros(n0, int), np.ones(n1, int)])
    prior = np.array([0.9, 0.1])
    logits = np.stack([-(x + 1) ** 2 / 2, -(x - 1) ** 2 / 2], 1) + np.log(prior)
    tau, value = fit_tau(y, logits, prior_term(prior, False), "binary-class", "balanced_acc")
    assert 0.75 <= tau <= 1.25 and value > 0.82
    # val AUC (a ranking) is the same at every tau: the fit is scored on balanced accuracy instead of tying at 0
    assert fit_tau(y, logits, prior_term(prior, False), "binary-class", "auc") == (tau, value)


def test_multilabel_defaults_never_make_a_rare_label_positive_everywhere() -> None:
    """Priors 0.1 / 0.02 / 0.002: the default multi-label tau and post-hoc fit keep each label's accuracy at
    least that of predicting it absent; tau 1 on the log-odds (the single-label default) would not."""
    rng = np.random.default_rng(0)
    priors = np.array([0.1, 0.02, 0.002])

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = (rng.random((n, 3)) < priors).astype(np.float32)
        x = y * 1.5 + rng.normal(0, 1, (n, 3))  # weak evidence: a rare label stays hard
        return torch.tensor(x, dtype=torch.float32), torch.tensor(y)

    (xt, yt), (xv, yv), (xs, ys) = sample(40000), sample(20000), sample(20000)
    counts = yt.sum(0).numpy()

    def train(cfg: FinetuneConfig) -> torch.nn.Module:
        criterion, adjust = make_criterion(cfg, counts, len(yt), multilabel=True)
        return _fit_linear(criterion, adjust, xt, yt, 3, 3, max_iter=300)

    term = prior_term(class_prior(counts, len(yt), True), True)
    absent = 1.0 - ys.numpy().mean(0)  # accuracy of predicting every label absent

    def accuracy(score: np.ndarray) -> np.ndarray:
        return ((score > 0.5) == ys.numpy().astype(bool)).mean(0)  # type: ignore[no-any-return]

    default = train(FinetuneConfig(loss="focal-la"))
    with torch.no_grad():
        lv, ls = default(xv).numpy(), default(xs).numpy()
    assert (accuracy(scores(ls, 0 * term, True)) >= absent - 1e-3).all()  # no post-hoc (the default)
    for metric in ("auc", "acc"):
        tau, _ = fit_tau(yv.numpy(), lv, term, MULTILABEL, metric)  # --tau-posthoc auto
        assert keeps_label_accuracy(yv.numpy(), scores(lv, tau * term, True))
        assert (accuracy(scores(ls, tau * term, True)) >= absent - 1e-3).all(), (metric, tau)
    strong = train(FinetuneConfig(loss="focal-la", tau_multilabel=1.0))
    with torch.no_grad():
        ls = strong(xs).numpy()
    assert accuracy(scores(ls, 0 * term, True))[2] < 0.5  # tau 1 on the log-odds: the rare label nearly always on


def test_class_balanced_focal_is_cui_et_al_sigmoid_form() -> None:
    counts = np.array([500, 50, 5])
    weights = class_balanced_weights(counts)
    effective = (1 - 0.9999 ** counts) / (1 - 0.9999)  # Cui et al. eq. 3, beta 0.9999; weights 1/E, summing to C
    assert np.allclose(weights.numpy(), (1 / effective) / (1 / effective).sum() * 3, rtol=1e-5)
    criterion, adjust = make_criterion(FinetuneConfig(loss="cb-focal", gamma=2.0), counts, 555, False)
    assert isinstance(criterion, ClassBalancedSigmoidFocalLoss) and isinstance(adjust, torch.nn.Identity)
    logits, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    one_hot = F.one_hot(y, 3).float()
    p = torch.sigmoid(logits)
    p_t = one_hot * p + (1 - one_hot) * (1 - p)
    manual = (-(1 - p_t) ** 2 * torch.log(p_t)).sum(1) * weights[y]
    assert criterion(logits, y).item() == pytest.approx(manual.mean().item(), rel=1e-5)
    # gamma 0, equal weights: binary cross-entropy summed over classes, averaged over images
    flat = ClassBalancedSigmoidFocalLoss(torch.ones(3), 0.0)
    assert flat(logits, y).item() == pytest.approx(
        3 * F.binary_cross_entropy_with_logits(logits, one_hot).item(), rel=1e-5)
    softmax, _ = make_criterion(FinetuneConfig(loss="cb-focal-softmax"), counts, 555, False)
    assert isinstance(softmax, FocalLoss) and torch.allclose(softmax.alpha, weights)
    with pytest.raises(ConfigError, match="single-label"):
        make_criterion(FinetuneConfig(loss="cb-focal"), counts, 555, True)


@pytest.mark.parametrize("kind", ["derived", "resnet32"])
def test_cb_focal_starts_every_sigmoid_at_the_class_prior_one_over_c(kind: str) -> None:
    """The reference's sigmoid/focal head: bias -log(C - 1), so sigmoid(bias) = 1/C (0.1 on CIFAR-10)."""
    model = (DerivedNetwork(Supernet(1, 4).genotype(), 1, 4, 3, 28, 10) if kind == "derived"
             else create_baseline(kind, 1, 10, 28))
    model = prepare_head(model, FinetuneConfig(loss="cb-focal"))
    head = model.head if kind == "derived" else model.fc
    assert torch.allclose(torch.sigmoid(head.bias), torch.full((10,), 0.1))
    plain = prepare_head(create_baseline(kind if kind != "derived" else "resnet32", 1, 10, 28), FinetuneConfig())
    assert not torch.allclose(torch.sigmoid(plain.fc.bias), torch.full((10,), 0.1))  # other losses: untouched


@pytest.mark.parametrize("bad", ["nan", "inf", "often", "-inf"])
def test_tau_posthoc_must_be_none_auto_or_a_number(bad: str) -> None:
    with pytest.raises(ConfigError, match="tau-posthoc"):
        FinetuneConfig(tau_posthoc=bad)
    assert FinetuneConfig(tau_posthoc="-0.5").posthoc_tau() == -0.5
    assert FinetuneConfig(tau_posthoc="auto").posthoc_tau() is None
