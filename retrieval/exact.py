"""Exact scoring over the whole catalog in memory, with a user's seen items excluded.

Used where every item's score is at hand (choosing weights and epochs on validation, the
ranker's training candidates, the baselines); serving asks Chroma instead. One tie rule
everywhere: an item tied with the target ranks above it (the pessimistic convention, so a
model that scores everything alike gets no credit).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def mask_seen(scores: np.ndarray, seen: Iterable[int]) -> np.ndarray:
    """A float64 copy of ``scores`` (shape ``(n_items,)``) with the ``seen`` indices at -inf."""
    out = np.array(scores, dtype=np.float64)
    out[sorted(set(seen))] = -np.inf
    return out


def top_k_unseen(scores: np.ndarray, seen: Iterable[int], k: int) -> np.ndarray:
    """Indices of the ``k`` best-scored items not in ``seen``, best first; equal scores keep
    index order. Fewer than ``k`` when fewer items are unseen: never padded with seen ones.
    Raises ``ValueError`` for ``k < 1``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    s = mask_seen(scores, seen)
    k = min(k, len(s))
    top = np.argpartition(-s, k - 1)[:k] if k < len(s) else np.arange(len(s))
    top = top[np.lexsort((top, -s[top]))]  # by score, then by index
    return top[np.isfinite(s[top])]


def rank_among_unseen(scores: np.ndarray, seen: Iterable[int], target: int) -> int:
    """1-based rank of item ``target`` among the items not in ``seen`` (the target itself is
    never treated as seen); an item with the target's score ranks above it."""
    s = mask_seen(scores, (i for i in seen if i != target))
    t = s[target]
    return int((s > t).sum() + (s == t).sum())
