"""Reference rankers every Muse number is reported beside (exact, in memory; no Chroma).

- popularity: items by training interaction count;
- item-kNN: cosine item-item similarity, scored over the user's last 20 items weighted 0.9^age
  (the anchor row of ../shared/design.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from retrieval.history import recency_weights


def popularity_scores(sequences: Sequence[Sequence[int]], n_items: int) -> np.ndarray:
    counts = np.zeros(n_items)
    for seq in sequences:
        np.add.at(counts, np.asarray(seq, dtype=np.int64), 1.0)
    return counts


def item_knn_similarity(sequences: Sequence[Sequence[int]], n_items: int) -> np.ndarray:
    """Cosine similarity between items' user sets, zero diagonal."""
    gram = np.zeros((n_items, n_items))
    for seq in sequences:
        items = np.unique(np.asarray(seq, dtype=np.int64))
        gram[np.ix_(items, items)] += 1.0
    norms = np.sqrt(np.diag(gram)).clip(min=1e-12)
    sim = gram / norms[:, None] / norms[None, :]
    np.fill_diagonal(sim, 0.0)
    return sim


def item_knn_scores(sim: np.ndarray, history: Sequence[int], window: int = 20, decay: float = 0.9) -> np.ndarray:
    idx, w = recency_weights(history, window, decay)
    return w @ sim[idx] if len(idx) else np.zeros(sim.shape[0])
