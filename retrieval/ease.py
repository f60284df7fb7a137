"""EASE (Steck 2019): a closed-form linear item-item model, factorised for a vector store.

``B = I - P / diag(P)`` with ``P = (X^T X + lambda I)^-1`` scores item j for a user as
``sum_i w_i B[i, j]`` over the user's (recency-weighted) history. ``B`` is n x n, so for
Chroma it is factorised ``B ~= L R^T`` by truncated SVD: the item vector is its row of R and the
user vector is ``w^T L``, an inner product away from the EASE score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from retrieval.history import recency_weights


def fit_ease(sequences: Sequence[Sequence[int]], n_items: int, lam: float = 500.0) -> np.ndarray:
    """The item-item weight matrix B (zero diagonal) from training sequences of item indices."""
    gram = np.zeros((n_items, n_items), dtype=np.float64)
    for seq in sequences:
        items = np.unique(np.asarray(seq, dtype=np.int64))
        gram[np.ix_(items, items)] += 1.0
    gram[np.diag_indices(n_items)] += lam
    precision = np.linalg.inv(gram)
    weights = -precision / np.diag(precision)
    weights[np.diag_indices(n_items)] = 0.0
    return weights


class EaseFactors:
    """Low-rank EASE: ``left`` (n x r) maps history to a user vector, ``right`` (n x r) holds items."""

    def __init__(self, weights: np.ndarray, rank: int, window: int = 20, decay: float = 0.9):
        rank = min(rank, weights.shape[0])
        u, s, vt = np.linalg.svd(weights, full_matrices=False)
        root = np.sqrt(s[:rank])
        self.left = (u[:, :rank] * root).astype(np.float32)
        self.right = (vt[:rank].T * root).astype(np.float32)
        self.window, self.decay = window, decay

    def user_vector(self, history: Sequence[int]) -> np.ndarray:
        idx, w = recency_weights(history, self.window, self.decay)
        return (w[:, None] * self.left[idx]).sum(axis=0).astype(np.float32)
