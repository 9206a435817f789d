"""A tiny search engine on synthetic data, built in well under a second, for tests that step the engine itself."""

from __future__ import annotations

from typing import Any

from ssnas_core.config import RunConfig, with_overrides
from ssnas_core.search.engine import SearchEngine
from ssnas_core.search.setup import build_search

# 128 synthetic images (two halves of 64: 4 batches of 16 each epoch), width 4, a small projector.
SMALL_SEARCH = {"data.dataset": "synthetic", "data.limit_train": 128, "search.batch_size": 16, "search.width": 4,
                "search.projector": "64-64", "device": "cpu"}


def search_engine(**overrides: Any) -> SearchEngine:
    """The engine of ``SMALL_SEARCH`` with dotted-key ``overrides`` (seeded by ``seed``, 0 unless given)."""
    return build_search(with_overrides(RunConfig(), {**SMALL_SEARCH, **overrides})).engine
