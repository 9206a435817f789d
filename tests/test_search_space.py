"""Search space: mixing, alphas, genotype derivation, derived network."""

import numpy as np
import pytest
import torch

from ssnas_core.errors import ConfigError
from ssnas_core.search_space.cells import edge_index, n_edges
from ssnas_core.search_space.genotype import Genotype, derive_cell
from ssnas_core.search_space.network import DerivedNetwork, count_parameters
from ssnas_core.search_space.primitives import OPS, PRIMITIVES
from ssnas_core.search_space.supernet import Supernet

from .oracle_cells import MixedOp


def test_sigmoid_weights_are_independent_and_softmax_weights_compete() -> None:
    alpha = torch.zeros(n_edges(4), len(PRIMITIVES))
    alpha[0, 3] = 5.0
    sig = Supernet(1, 4, relaxation="sigmoid").relax(alpha)
    soft = Supernet(1, 4, relaxation="softmax").relax(alpha)
    assert torch.allclose(soft.sum(-1), torch.ones(n_edges(4)))
    assert sig[0, 0].item() == pytest.approx(0.5)  # raising one op leaves the others alone
    assert soft[0, 0].item() < 1 / len(PRIMITIVES)  # ... under softmax it takes weight from them
    assert sig[0].sum().item() > 1.0


def test_mixed_op_is_the_weighted_sum_of_its_ops() -> None:
    torch.manual_seed(0)
    op = MixedOp(4, 1, PRIMITIVES).eval()
    x = torch.randn(2, 4, 8, 8)
    w = torch.zeros(len(PRIMITIVES))
    w[PRIMITIVES.index("sep_conv_3x3")] = 1.0
    assert torch.allclose(op(x, w), op.ops["sep_conv_3x3"](x))
    w[PRIMITIVES.index("skip_connect")] = 0.5
    assert torch.allclose(op(x, w), op.ops["sep_conv_3x3"](x) + 0.5 * x, atol=1e-6)


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("stride", [1, 2])
def test_every_op_keeps_channels_and_gives_finite_output(name: str, stride: int) -> None:
    x = torch.randn(2, 4, 7, 7)
    y = OPS[name](4, stride, False)(x)
    assert y.shape == (2, 4, 4 if stride == 2 else 7, 4 if stride == 2 else 7)
    assert torch.isfinite(y).all()


def test_alphas_are_parameters_that_survive_a_state_dict_round_trip() -> None:
    net = Supernet(1, 4)
    with torch.no_grad():
        net.alpha_normal.add_(1.0)
    copy = Supernet(1, 4)
    copy.load_state_dict(net.state_dict())
    assert torch.equal(copy.alpha_normal, net.alpha_normal)
    assert {id(p) for p in net.alphas()}.isdisjoint({id(p) for p in net.weights()})
    assert len(list(net.parameters())) == len(list(net.weights())) + 2


def _weights(strong: dict[int, tuple[str, float]], base: float = 0.1) -> np.ndarray:
    w = np.full((n_edges(4), len(PRIMITIVES)), base)
    for e, (op, value) in strong.items():
        w[e, PRIMITIVES.index(op)] = value
    return w


def test_fairdarts_rule_keeps_ops_above_threshold_on_the_two_strongest_edges() -> None:
    # Edges: node 2 <- {0: e0, 1: e1}; node 3 <- {0: e2, 1: e3, 2: e4}; node 4: e5-e8; node 5: e9-e13.
    w = _weights({0: ("sep_conv_3x3", 0.95), 1: ("skip_connect", 0.90),
                  2: ("dil_conv_3x3", 0.99), 3: ("max_pool_3x3", 0.50), 4: ("sep_conv_5x5", 0.40),
                  7: ("avg_pool_3x3", 0.97), 8: ("sep_conv_3x3", 0.96), 5: ("dil_conv_5x5", 0.95),
                  13: ("none", 0.99), 12: ("sep_conv_5x5", 0.30)})
    genes = derive_cell(w, 4, "sigmoid", threshold=0.85)
    assert genes == (
        ("sep_conv_3x3", 0, 2), ("skip_connect", 1, 2),
        ("dil_conv_3x3", 0, 3),  # the 2nd-strongest edge (0.50) is under the threshold
        ("avg_pool_3x3", 2, 4), ("sep_conv_3x3", 3, 4),  # 3 edges above 0.85: only the 2 strongest
        ("sep_conv_5x5", 3, 5),  # nothing above threshold and `none` excluded: strongest (edge, op) kept
    )


def test_softmax_rule_takes_two_edges_per_node_and_never_none() -> None:
    w = _weights({0: ("none", 0.9), 1: ("sep_conv_3x3", 0.5)}, base=0.01)
    genes = derive_cell(w, 4, "softmax")
    assert all(op != "none" for op, _, _ in genes)
    assert sum(1 for _, _, d in genes if d == 2) == 2
    assert len(genes) == 8


def test_genotype_json_round_trip_and_validation() -> None:
    net = Supernet(1, 4)
    g = net.genotype()
    assert Genotype.from_json(g.to_json()) == g
    with pytest.raises(ConfigError, match="unknown operation"):
        Genotype((("conv_9x9", 0, 2),), (), 1).validate()
    with pytest.raises(ConfigError, match="without input"):
        Genotype((("skip_connect", 0, 2),), (("skip_connect", 0, 2),), 2).validate()


def test_derived_network_inherits_exactly_the_chosen_operations() -> None:
    torch.manual_seed(0)
    net = Supernet(1, 4)
    g = Genotype(normal=(("sep_conv_3x3", 0, 2), ("skip_connect", 1, 3), ("max_pool_3x3", 2, 4),
                         ("dil_conv_5x5", 1, 5)),
                 reduce=(("sep_conv_5x5", 1, 2), ("dil_conv_3x3", 0, 3), ("avg_pool_3x3", 2, 4),
                         ("sep_conv_3x3", 4, 5)), n_nodes=4)
    derived = DerivedNetwork(g, 1, c=4, n_classes=3)
    copied = derived.inherit_from(net.state_dict())
    edge = {pair: e for e, pair in enumerate(edge_index(4))}
    e = edge[(0, 2)]
    key = f"cells.0.edges.{e}.ops.sep_conv_3x3.0.1.weight"
    assert key in copied and torch.equal(derived.state_dict()[key], net.state_dict()[key])
    assert not any(".ops.sep_conv_5x5." in k and k.startswith("cells.0.") for k in copied)
    assert derived(torch.randn(2, 1, 28, 28)).shape == (2, 3)
    assert count_parameters(derived) < count_parameters(net)


@pytest.mark.parametrize("c_in, size", [(1, 28), (3, 32), (3, 64), (1, 128)])
def test_stem_takes_one_or_three_channels_and_larger_images(c_in: int, size: int) -> None:
    net = Supernet(c_in, 4, image_size=size)
    feats = net(torch.randn(2, c_in, size, size))
    assert feats.shape == (2, net.feature_dim) and torch.isfinite(feats).all()
    derived = DerivedNetwork(net.genotype(), c_in, 4, 3, size, n_classes=5)
    assert derived(torch.randn(2, c_in, size, size)).shape == (2, 5)
