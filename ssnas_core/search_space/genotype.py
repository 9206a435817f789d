"""Genotypes as data, and how they are derived from architecture weights.

A gene is ``(op, from_node, to_node)``: nodes 0 and 1 are the cell inputs
(outputs of the cells k-2 and k-1) and intermediate node i is ``i + 2``.
Every intermediate node is concatenated into the cell output.

Derivation rules (``derive_cell``):

* ``sigmoid`` (FairDARTS): the "threshold_sparse" rule of the FairDARTS code
  (Chu et al., ECCV 2020; xiaomi-automl/FairDARTS, ``fairdarts/utils.py``
  ``parse(..., parse_method='threshold_sparse', op_threshold=0.85)``): for each
  intermediate node take the ``k`` = 2 incoming edges whose strongest
  operation is strongest, and keep an edge's strongest operation only if its
  sigmoid weight is at least the threshold (0.85). The original can leave a
  node with no input at all; we then keep the single strongest (edge, op) of
  that node, so no node is ever empty (RELIABILITY.md section 4).
* ``softmax`` (DARTS, Liu et al. 2019, ``genotypes``/``parse``): for each node
  the 2 edges with the strongest non-``none`` operation, each with that
  operation.

``none`` is never chosen by either rule.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ssnas_core.errors import ConfigError
from ssnas_core.search_space.cells import edge_index, n_edges
from ssnas_core.search_space.primitives import OPS, PRIMITIVES

Gene = tuple[str, int, int]


@dataclass(frozen=True)
class Genotype:
    """The discrete architecture: genes of the normal and the reduction cell."""

    normal: tuple[Gene, ...]
    reduce: tuple[Gene, ...]
    n_nodes: int

    def validate(self) -> Genotype:
        """Check ops against the registry and the DAG structure.

        Raises:
            ConfigError: naming the bad gene and what was expected.
        """
        for name, genes in (("normal", self.normal), ("reduce", self.reduce)):
            fed = set()
            for op, src, dst in genes:
                if op not in OPS or op == "none":
                    known = ", ".join(p for p in OPS if p != "none")
                    raise ConfigError(f"genotype {name} cell uses unknown operation {op!r}: use one of {known}")
                if not (2 <= dst < self.n_nodes + 2 and 0 <= src < dst):
                    raise ConfigError(
                        f"genotype {name} cell has edge {src}->{dst}: nodes run 0..{self.n_nodes + 1} "
                        "and an edge must go from an earlier node to an intermediate node"
                    )
                fed.add(dst)
            missing = sorted(set(range(2, self.n_nodes + 2)) - fed)
            if missing:
                raise ConfigError(f"genotype {name} cell leaves node(s) {missing} without input")
        return self

    def to_json(self) -> str:
        return json.dumps({"normal": [list(g) for g in self.normal], "reduce": [list(g) for g in self.reduce],
                           "n_nodes": self.n_nodes}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        """Parse and validate; raises ConfigError on malformed input."""
        try:
            data: Any = json.loads(text)
            genotype = cls(
                normal=tuple((_name(o), _index(s), _index(d)) for o, s, d in data["normal"]),
                reduce=tuple((_name(o), _index(s), _index(d)) for o, s, d in data["reduce"]),
                n_nodes=_index(data["n_nodes"]),
            )
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"genotype JSON is malformed ({err}): expected keys normal, reduce, n_nodes, "
                              "genes as [op name, from node, to node] with whole-number nodes") from err
        return genotype.validate()

    def describe(self) -> str:
        """One readable line, e.g. ``normal: sep_conv_3x3 0->2, skip_connect 1->2, ...; reduce: ...``."""
        return "; ".join(f"{name}: " + ", ".join(f"{op} {src}->{dst}" for op, src, dst in genes)
                         for name, genes in (("normal", self.normal), ("reduce", self.reduce)))

    def skip_count(self) -> dict[str, int]:
        """Number of ``skip_connect`` genes per cell type (the collapse monitor)."""
        return {name: sum(op == "skip_connect" for op, _, _ in genes)
                for name, genes in (("normal", self.normal), ("reduce", self.reduce))}


def _name(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"operation {value!r} is not a name")
    return value


def _index(value: Any) -> int:
    """A node index or count: a JSON integer (not a bool, a fraction or a string)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is not a whole number")
    return value


def derive_cell(weights: np.ndarray, n_nodes: int, relaxation: str, threshold: float = 0.85,
                primitives: Sequence[str] = PRIMITIVES, k: int = 2) -> tuple[Gene, ...]:
    """Derive one cell's genes from relaxed weights.

    Args:
        weights: (n_edges, n_ops) relaxed weights (sigmoid or softmax of alpha).
        n_nodes: intermediate nodes of the cell.
        relaxation: ``sigmoid`` (FairDARTS threshold rule) or ``softmax`` (DARTS rule).
        threshold: FairDARTS op threshold on sigmoid weights.
        primitives: op names of the weight columns.
        k: incoming edges kept per node.

    Returns:
        The genes ``(op, from_node, to_node)``, at least one per node.
    """
    genes: list[Gene] = []
    for node_genes, _ in _derive_nodes(weights, n_nodes, relaxation, threshold, primitives, k):
        genes.extend(node_genes)
    return tuple(genes)


def _derive_nodes(weights: np.ndarray, n_nodes: int, relaxation: str, threshold: float,
                  primitives: Sequence[str], k: int = 2) -> list[tuple[list[Gene], bool]]:
    """Per intermediate node: its genes and whether they come from the fallback (no weight passed)."""
    w = np.array(weights, dtype=np.float64)
    if w.shape != (n_edges(n_nodes), len(primitives)):
        raise ValueError(f"weights of shape {w.shape} do not match {n_nodes} nodes and {len(primitives)} operations")
    if "none" in primitives:
        w[:, list(primitives).index("none")] = -np.inf
    pairs = edge_index(n_nodes)
    out: list[tuple[list[Gene], bool]] = []
    for dst in range(2, n_nodes + 2):
        edges = [e for e, (_, d) in enumerate(pairs) if d == dst]
        ranked = sorted(edges, key=lambda e: (-w[e].max(), e))[:k]
        node_genes = [(primitives[int(w[e].argmax())], pairs[e][0], dst) for e in ranked
                      if relaxation == "softmax" or w[e].max() >= threshold]
        fallback = not node_genes
        if fallback:  # FairDARTS can leave a node empty; keep its strongest (edge, op).
            e = ranked[0]
            node_genes = [(primitives[int(w[e].argmax())], pairs[e][0], dst)]
        out.append((sorted(node_genes, key=lambda g: g[1]), fallback))
    return out


def fallback_nodes(weights: np.ndarray, n_nodes: int, relaxation: str, threshold: float = 0.85,
                   primitives: Sequence[str] = PRIMITIVES) -> int:
    """Intermediate nodes whose genes come from the fallback rule of ``derive_cell``.

    Under ``sigmoid`` a node falls back when none of its edges has an operation at or above the
    threshold: its gene is then a guess, not a decision. ``softmax`` (DARTS' rule) never falls back.
    """
    return sum(fb for _, fb in _derive_nodes(weights, n_nodes, relaxation, threshold, primitives))


def decided_fraction(weights: np.ndarray, relaxation: str, threshold: float = 0.85,
                     primitives: Sequence[str] = PRIMITIVES) -> float:
    """How decided a cell's relaxed weights are, in [0, 1].

    ``sigmoid``: the fraction of (edge, op) weights at or above ``threshold`` or at or below
    ``1 - threshold`` (0.5 everywhere gives 0; all weights near 0 or 1 give 1).
    ``softmax``: 1 minus the mean over edges of the entropy of the edge's weights (``none`` included)
    divided by ``log(n_ops)`` (uniform gives 0, one-hot edges give 1).
    """
    w = np.array(weights, dtype=np.float64)
    if relaxation == "sigmoid":
        return float(np.mean((w >= threshold) | (w <= 1 - threshold)))
    p = np.clip(w / w.sum(axis=1, keepdims=True), 1e-12, 1.0)
    entropy = -(p * np.log(p)).sum(axis=1) / np.log(w.shape[1])
    return float(1.0 - entropy.mean())


def derive_genotype(normal: np.ndarray, reduce: np.ndarray, n_nodes: int, relaxation: str,
                    threshold: float = 0.85, primitives: Sequence[str] = PRIMITIVES) -> Genotype:
    """Derive the genotype from both cells' relaxed weights (see ``derive_cell``)."""
    return Genotype(
        normal=derive_cell(normal, n_nodes, relaxation, threshold, primitives),
        reduce=derive_cell(reduce, n_nodes, relaxation, threshold, primitives),
        n_nodes=n_nodes,
    ).validate()
