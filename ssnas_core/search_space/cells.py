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

from typing import Any, Sequence

import torch
from torch import nn

from ssnas_core.search_space.edge_group import EdgeGroup
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


class SearchCell(nn.Module):
    """The supernet's cell: every edge carries every candidate operation, mixed by relaxed weights.

    Edges are computed per source state, all of a state's outgoing edges together (``EdgeGroup``);
    the mixing and the sums are those of ``x_j = sum_{i<j} sum_o w_ijo * o(x_i)``. The straightforward
    per-edge form stays in tests/oracle_cells.py, which checks this one against it.

    The state dict uses the per-edge names ``edges.<e>.ops.<op>.*`` (hooks translate the grouped
    tensors), so ``supernet.pt`` files, checkpoints and the derived network's weight inheritance read
    and write the same keys as before the grouping.
    """

    def __init__(self, n_nodes: int, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool,
                 primitives: Sequence[str]) -> None:
        super().__init__()
        self.reduction = reduction
        self.n_nodes = n_nodes
        self.primitives = tuple(primitives)
        self.c = c
        self.pre0, self.pre1 = preprocess(c_pp, c_p, c, reduction_prev, affine=False)
        pairs = edge_index(n_nodes)
        # groups[j]: the edges leaving state j, in target order (the last node feeds no edge)
        self._group_edges = [[e for e, (src, _) in enumerate(pairs) if src == j] for j in range(n_nodes + 1)]
        self.groups = nn.ModuleList(
            EdgeGroup(c, 2 if reduction and j < 2 else 1, len(edges), self.primitives)
            for j, edges in enumerate(self._group_edges)
        )
        self._targets = [[pairs[e][1] for e in edges] for edges in self._group_edges]
        order = [e for edges in self._group_edges for e in edges]
        self.register_buffer("_order", torch.tensor(order), persistent=False)
        self._sizes = [len(edges) for edges in self._group_edges]
        self.register_state_dict_post_hook(_to_legacy)
        self.register_load_state_dict_pre_hook(_from_legacy)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """s0, s1: the two previous cells' outputs; weights: (n_edges, n_ops) -> (B, n_nodes*c, H', W')."""
        # Once per forward: the weights in group order, as (1, k, 1, 1, 1) columns per operation.
        by_op = weights.t().index_select(1, self._order)  # (n_ops, n_edges), one copy
        columns = [w.reshape(len(self.primitives), 1, -1, 1, 1, 1).unbind(0) for w in by_op.split(self._sizes, 1)]
        # and as per-channel scales for the per-edge operations' BNs: (n_ops, n_edges * c), one copy
        per_channel = by_op.unsqueeze(-1).expand(-1, -1, self.c).reshape(len(self.primitives), -1)
        scales = [s.unbind(0) for s in per_channel.split([k * self.c for k in self._sizes], 1)]
        states = [self.pre0(s0), self.pre1(s1)]
        partial: dict[int, torch.Tensor] = {}
        for j, group in enumerate(self.groups):
            if j >= 2:
                states.append(partial.pop(j))  # node j has all its inputs
            for dst, part in zip(self._targets[j], group(states[j], columns[j], scales[j])):
                partial[dst] = part if dst not in partial else partial[dst] + part
        states.append(partial.pop(self.n_nodes + 1))
        return torch.cat(states[2:], dim=1)

    def legacy_items(self) -> list[tuple[str, str, str, list[int]]]:
        """``(grouped name, per-edge suffix after ops., mode, edges)`` for every grouped tensor of the cell."""
        return [(f"groups.{j}.{name}", suffix, mode, edges)
                for j, (group, edges) in enumerate(zip(self.groups, self._group_edges))
                for name, suffix, mode in group.legacy_keys()]


def _to_legacy(module: nn.Module, state: dict[str, Any], prefix: str, _meta: Any) -> None:
    """State-dict post hook: grouped tensors -> per-edge ``edges.<e>.ops.<op>.*`` entries."""
    assert isinstance(module, SearchCell)
    for name, suffix, mode, edges in module.legacy_items():
        if prefix + name not in state:  # e.g. a mapping of parameters only
            continue
        tensor = state.pop(prefix + name)
        parts = tensor.chunk(len(edges)) if mode == "split" else [tensor] * len(edges)
        for e, part in zip(edges, parts):
            state[f"{prefix}edges.{e}.ops.{suffix}"] = part


def _from_legacy(module: nn.Module, state: dict[str, Any], prefix: str, *_: Any) -> None:
    """Load-state-dict pre hook: per-edge entries -> grouped tensors (missing ones are left to torch's check)."""
    assert isinstance(module, SearchCell)
    for name, suffix, mode, edges in module.legacy_items():
        keys = [f"{prefix}edges.{e}.ops.{suffix}" for e in edges]
        if not all(k in state for k in keys):
            continue
        parts = [state.pop(k) for k in keys]
        state[prefix + name] = torch.cat(parts) if mode == "split" else parts[0]


def after_relu(op: nn.Module) -> tuple[nn.Module, bool]:
    """``(tail, True)`` when ``op`` is ReLU followed by ``tail`` (DilConv, SepConv), else ``(op, False)``.

    The tail shares ``op``'s modules, so running it on a ReLU computed once per input is the same maths.
    """
    if isinstance(op, DilConv):
        return nn.Sequential(*list(op.children())[1:]), True
    if isinstance(op, SepConv):
        first, second = op[0], op[1]
        return nn.Sequential(nn.Sequential(*list(first.children())[1:]), second), True
    return op, False


class FixedEdge(nn.Module):
    """The chosen operations of one edge of a derived cell (``ops.<name>``, summed)."""

    def __init__(self, ops: dict[str, nn.Module]) -> None:
        super().__init__()
        self.ops = nn.ModuleDict(ops)
        # (A plain list, so the tails' shared modules are not registered twice.)
        self._tails: list[tuple[nn.Module, bool]] = [after_relu(op) for op in self.ops.values()]
        self.reads_relu = any(on_relu for _, on_relu in self._tails)

    def forward(self, x: torch.Tensor, xr: torch.Tensor | None = None) -> torch.Tensor:
        """x: the input state; xr: ``relu(x)`` when the cell computed it once for all its readers."""
        if xr is None and self.reads_relu:
            xr = torch.relu(x)
        out: torch.Tensor | None = None
        for tail, on_relu in self._tails:
            y = tail(xr if on_relu else x)
            out = y if out is None else out + y
        assert out is not None  # a FixedEdge has at least one op
        return out


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
        return self.on_relu(torch.relu(s0), torch.relu(s1))

    def on_relu(self, r0: torch.Tensor, r1: torch.Tensor) -> torch.Tensor:
        """``forward`` given ``relu(s0)`` and ``relu(s1)``: a cell's output is read by the next two cells, and
        both preprocessing steps start with ReLU, so the network computes it once per output."""
        states = [self.pre0.on_relu(r0), self.pre1.on_relu(r1)]
        relu: dict[int, torch.Tensor] = {}
        for dst in range(2, self.n_nodes + 2):
            node: torch.Tensor | None = None
            for key, src in self._inputs[dst]:
                edge = self.edges[key]
                if edge.reads_relu and src not in relu:  # once per state, shared by every op reading it
                    relu[src] = torch.relu(states[src])
                y = edge(states[src], relu.get(src))
                node = y if node is None else node + y
            assert node is not None  # a validated genotype feeds every node
            states.append(node)
        return torch.cat(states[2:], dim=1)
