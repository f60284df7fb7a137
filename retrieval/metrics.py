"""Ranking metrics for leave-one-out evaluation (one relevant item per user).

Each function takes the 1-based rank of the held-out item in a user's ranking (``None`` or
``0`` when it was not ranked at all) and returns that user's score; averaging over users is
the caller's job. Kept as tiny pure functions so each can be checked on hand-worked cases.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

CUTOFFS = (5, 10, 20)
# The keys every `muse eval` report carries, in print order.
METRIC_KEYS = ("R@5", "N@5", "M@5", "R@10", "N@10", "M@10", "R@20", "N@20", "M@20")


def recall_at(rank: int | None, k: int) -> float:
    """1 if the held-out item is in the top k, else 0 (hit rate with one relevant item)."""
    return 1.0 if rank and rank <= k else 0.0


def ndcg_at(rank: int | None, k: int) -> float:
    """nDCG@k with one relevant item: 1/log2(rank + 1) when ``rank`` <= ``k``, else 0 (the
    ideal DCG is 1). Järvelin and Kekäläinen, "Cumulated gain-based evaluation of IR
    techniques", ACM TOIS 2002."""
    return 1.0 / math.log2(rank + 1) if rank and rank <= k else 0.0


def mrr_at(rank: int | None, k: int) -> float:
    """Reciprocal rank, cut off at k."""
    return 1.0 / rank if rank and rank <= k else 0.0


def rank_of(target: object, ranking: Sequence[object]) -> int | None:
    """1-based position of ``target`` in ``ranking``, or None when absent."""
    for position, item in enumerate(ranking, start=1):
        if item == target:
            return position
    return None


def summarize(ranks: Iterable[int | None]) -> dict[str, float]:
    """Mean R/N/M at 5, 10 and 20 over users, given each user's rank of the held-out item."""
    ranks = list(ranks)
    if not ranks:
        raise ValueError("no users to evaluate")
    out: dict[str, float] = {}
    for k in CUTOFFS:
        out[f"R@{k}"] = sum(recall_at(r, k) for r in ranks) / len(ranks)
        out[f"N@{k}"] = sum(ndcg_at(r, k) for r in ranks) / len(ranks)
        out[f"M@{k}"] = sum(mrr_at(r, k) for r in ranks) / len(ranks)
    return {key: out[key] for key in METRIC_KEYS}
