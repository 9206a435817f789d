"""Cells of the search space: the relaxed ``MixedOp`` and ``SearchCell``, and ``FixedCell``.

A cell is a DAG with two inputs (the outputs of the two previous cells,
nodes 0 and 1) and ``n_nodes`` intermediate nodes ``x_j = sum_{i<j} o_ij(x_i)``
(SEED.txt). Edges are numbered node by node: node 2 takes edges 0-1, node 3
edges 2-4, and so on; ``edge_index`` gives the mapping. The cell outputs the
intermediate nodes concatenated on channels, so ``c_out = n_nodes * c``.

Both cell kinds name their parameters ``edges.<e>.ops.<op>.*`` so that a
derived network inherits the searched weights by matching state-dict keys.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ssnas_core.search_space.primitives import OPS, DilConv, FactorizedReduce, ReLUConvBN, SepConv


def n_edges(n_nodes: int) -> int:
    """Number of edges of a cell with ``n_nodes`` intermediate nodes (14 for 4)."""
    return sum(2 + i for i in range(n_nodes))


def edge_index(n_nodes: int) -> list[tuple[int, int]]:
    """``[(from_node, to_node), ...]`` in edge order; nodes 0, 1 are the cell inputs."""
    return [(j, i + 2) for i in range(n_nodes) for j in range(2 + i)]


def preprocess(c_pp: int, c_p: int, c: int, reduction_prev: bool, affine: bool) -> tuple[nn.Module, nn.Module]:
    """Map the two cell inputs (channels ``c_pp``, ``c_p``) to ``c`` channels and a common size."""
    pre0 = FactorizedReduce(c_pp, c, affine) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0, affine)
    return pre0, ReLUConvBN(c_p, c, 1, 1, 0, affine)


def _after_relu(op: nn.Module) -> tuple[nn.Module, bool]:
    """``(tail, True)`` when ``op`` is ReLU followed by ``tail`` (DilConv, SepConv), else ``(op, False)``."""
    if isinstance(op, DilConv):
        return nn.Sequential(*list(op.children())[1:]), True
    if isinstance(op, SepConv):
        first, second = op[0], op[1]
        return nn.Sequential(nn.Sequential(*list(first.children())[1:]), second), True
    return op, False


class MixedOp(nn.Module):
    """All candidate operations on one edge, mixed by relaxed weights.

    ``none`` is not instantiated: its output is zero, so leaving it out of the
    sum changes neither the output nor any gradient.
    """

    def __init__(self, c: int, stride: int, primitives: Sequence[str]) -> None:
        super().__init__()
        self.primitives = tuple(primitives)
        self.ops = nn.ModuleDict({p: OPS[p](c, stride, False) for p in primitives if p != "none"})
        self._index = [self.primitives.index(p) for p in self.ops]
        # The conv ops all start with ReLU(x): compute it once per edge and run their tails on it.
        # (A plain list, so the tails' shared modules are not registered twice.)
        self._tails: list[tuple[int, nn.Module, bool]] = [
            (k, *_after_relu(op)) for k, op in zip(self._index, self.ops.values())
        ]

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """x: (B, c, H, W); weights: (n_ops,) relaxed weights in ``primitives`` order."""
        out: torch.Tensor | None = None
        xr = torch.relu(x) if any(on_relu for _, _, on_relu in self._tails) else x
        for k, op, on_relu in self._tails:
            term = weights[k] * op(xr if on_relu else x)
            out = term if out is None else out + term
        if out is None:  # an edge with only ``none``
            raise ValueError("a MixedOp needs at least one operation other than 'none'")
        return out


class SearchCell(nn.Module):
    """A cell whose every edge is a ``MixedOp`` (the supernet's cell)."""

    def __init__(self, n_nodes: int, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool,
                 primitives: Sequence[str]) -> None:
        super().__init__()
        self.reduction = reduction
        self.n_nodes = n_nodes
        self.pre0, self.pre1 = preprocess(c_pp, c_p, c, reduction_prev, affine=False)
        self.edges = nn.ModuleList(
            MixedOp(c, 2 if reduction and src < 2 else 1, primitives) for src, _ in edge_index(n_nodes)
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """s0, s1: the two previous cells' outputs; weights: (n_edges, n_ops) -> (B, n_nodes*c, H', W')."""
        states = [self.pre0(s0), self.pre1(s1)]
        e = 0
        for i in range(self.n_nodes):
            node = self.edges[e](states[0], weights[e])
            for j in range(1, 2 + i):
                node = node + self.edges[e + j](states[j], weights[e + j])
            e += 2 + i
            states.append(node)
        return torch.cat(states[2:], dim=1)


class FixedEdge(nn.Module):
    """The chosen operations of one edge of a derived cell (``ops.<name>``, summed)."""

    def __init__(self, ops: dict[str, nn.Module]) -> None:
        super().__init__()
        self.ops = nn.ModuleDict(ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [op(x) for op in self.ops.values()]
        return outs[0] if len(outs) == 1 else torch.stack(outs).sum(0)


class FixedCell(nn.Module):
    """A derived cell: only the genotype's operations, on the genotype's edges."""

    def __init__(self, genes: Sequence[tuple[str, int, int]], n_nodes: int, c_pp: int, c_p: int, c: int,
                 reduction: bool, reduction_prev: bool, affine: bool = True) -> None:
        super().__init__()
        self.n_nodes = n_nodes
        self.pre0, self.pre1 = preprocess(c_pp, c_p, c, reduction_prev, affine)
        index = {pair: e for e, pair in enumerate(edge_index(n_nodes))}
        chosen: dict[int, dict[str, nn.Module]] = {}
        for op, src, dst in genes:
            stride = 2 if reduction and src < 2 else 1
            chosen.setdefault(index[(src, dst)], {})[op] = OPS[op](c, stride, affine)
        self.edges = nn.ModuleDict({str(e): FixedEdge(ops) for e, ops in sorted(chosen.items())})
        self._inputs = {dst: [(str(index[(s, dst)]), s) for _, s, d in genes if d == dst]
                        for dst in range(2, n_nodes + 2)}
        for dst, inputs in self._inputs.items():
            self._inputs[dst] = sorted(set(inputs))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for dst in range(2, self.n_nodes + 2):
            terms = [self.edges[key](states[src]) for key, src in self._inputs[dst]]
            states.append(terms[0] if len(terms) == 1 else torch.stack(terms).sum(0))
        return torch.cat(states[2:], dim=1)
