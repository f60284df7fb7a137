"""Accuracy broken down by user and item groups: where a model works and where it does not.

Two standard cuts of a leave-one-out run (one held-out item per user):

- by the user's history length at prediction time (``HISTORY_EDGES``): short histories are
  the cold(er) users;
- by the held-out item's popularity in the training data: the catalog sorted by the number of
  training users who had each item, cut into the head (the top 20% of items), the middle (the
  next 30%) and the tail (the other 50%), the short-head/long-tail split of the popularity-bias
  literature (Abdollahpouri et al., RMSE@RecSys 2019).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping, Sequence

from retrieval.metrics import ndcg_at

HISTORY_EDGES = (0, 20, 50, 100, 250)  # buckets [0, 20), [20, 50), ..., [250, inf)
POPULARITY_SHARES = (("head (top 20% of items)", 0.2), ("middle (next 30%)", 0.5), ("tail (last 50%)", 1.0))


def history_bucket(length: int, edges: Sequence[int] = HISTORY_EDGES) -> str:
    """The label of the bucket ``length`` falls in: ``"20-49"``, or ``"250+"`` for the last.
    Raises ``ValueError`` below the first edge."""
    if length < edges[0]:
        raise ValueError(f"history length {length} is below the first edge {edges[0]}")
    for low, high in itertools.pairwise(edges):
        if low <= length < high:
            return f"{low}-{high - 1}"
    return f"{edges[-1]}+"


def popularity_tiers(counts: Mapping[str, int], items: Sequence[str]) -> dict[str, str]:
    """Item id -> its tier label (``POPULARITY_SHARES``), by rank in ``counts`` (training users
    per item; ties broken by id, items absent from ``counts`` count 0)."""
    ranked = sorted(items, key=lambda i: (-counts.get(i, 0), i))
    out, start = {}, 0
    for label, share in POPULARITY_SHARES:
        end = round(share * len(ranked))
        for item in ranked[start:end]:
            out[item] = label
        start = end
    return out


def ndcg_by_group(
    groups: Sequence[str], ranks: Mapping[str, Sequence[int | None]], order: Sequence[str]
) -> list[dict]:
    """One row per group label in ``order`` that occurs: ``{"bucket", "users", model: N@10
    mean over that group's users, ...}``. ``groups[u]`` is user u's label; ``ranks[model][u]``
    that model's 1-based rank of user u's held-out item (None: not ranked)."""
    sizes = Counter(groups)
    rows = []
    for label in order:
        if not sizes[label]:
            continue
        members = [u for u, g in enumerate(groups) if g == label]
        row: dict = {"bucket": label, "users": sizes[label]}
        for model, r in ranks.items():
            row[model] = sum(ndcg_at(r[u], 10) for u in members) / len(members)
        rows.append(row)
    return rows


def history_labels(edges: Sequence[int] = HISTORY_EDGES) -> list[str]:
    """Every history bucket label, in order."""
    return [history_bucket(e, edges) for e in edges]
