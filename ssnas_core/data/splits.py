"""The bi-level split of the search set: one half trains weights w, the other alphas.

DARTS-style search alternates a weight step on one half of the training set
and an architecture step on the other. The split is stratified per class, so
every class with at least two images appears in both halves, which matters on
long-tailed data where a tail class may have only a handful of images.
"""

from __future__ import annotations

import numpy as np

from ssnas_core.errors import ConfigError, DatasetError


def bilevel_split(labels: np.ndarray, seed: int, fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into a weight half and an architecture half, stratified per class.

    Each class of n_c images puts ``round(fraction * n_c)`` of them, clipped to
    [1, n_c - 1], into the first half and the rest into the second. Multi-label
    labels (N, L) with L > 1 get a plain random split.

    Args:
        labels: int labels, shape (N,), (N, 1) or (N, L).
        seed: seed of the local ``np.random.Generator``.
        fraction: share of each class in the first half, in (0, 1).

    Returns:
        ``(w_indices, alpha_indices)``: disjoint sorted int64 arrays whose union is
        ``arange(N)``.

    Raises:
        ConfigError: ``fraction`` outside (0, 1).
        DatasetError: a class present with fewer than 2 images (it cannot be in both halves).
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"bi-level split fraction {fraction}: expected a number strictly between 0 and 1")
    arr = np.asarray(labels)
    rng = np.random.default_rng(seed)
    n = len(arr)
    if arr.ndim == 2 and arr.shape[1] > 1:
        if n < 2:
            raise DatasetError(f"bi-level split: found {n} images, expected at least 2; use a larger training set")
        order = rng.permutation(n)
        k = min(max(round(fraction * n), 1), n - 1)
        return np.sort(order[:k]).astype(np.int64), np.sort(order[k:]).astype(np.int64)
    flat = arr.reshape(-1).astype(np.int64) if arr.ndim == 2 else arr.astype(np.int64)
    first: list[np.ndarray] = []
    second: list[np.ndarray] = []
    for k in np.unique(flat).tolist():
        members = np.flatnonzero(flat == k)
        if len(members) < 2:
            raise DatasetError(
                f"bi-level split: class {k} has {len(members)} image, expected at least 2 so that it appears in "
                "both halves; lower the imbalance factor or the --limit-train reduction"
            )
        members = members[rng.permutation(len(members))]
        cut = min(max(round(fraction * len(members)), 1), len(members) - 1)
        first.append(members[:cut])
        second.append(members[cut:])
    if not first:
        raise DatasetError("bi-level split: found no images, expected a non-empty training set")
    return np.sort(np.concatenate(first)).astype(np.int64), np.sort(np.concatenate(second)).astype(np.int64)
