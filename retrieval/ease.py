"""EASE (Steck 2019): a closed-form linear item-item model, factorised for a vector store.

``B = I - P / diag(P)`` with ``P = (X^T X + lambda I)^-1`` scores item j for a user as
``sum_i w_i B[i, j]`` over the user's (recency-weighted) history. ``B`` is n x n, so for
Chroma it is factorised ``B ~= L R^T`` by truncated SVD (``LinearFactors``): the item vector is
its row of R and the user vector is ``w^T L``, an inner product away from the EASE score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


EXACT_SVD_MAX = 4096


def truncated_svd(matrix: np.ndarray, rank: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The top ``rank`` singular triplets. Exact LAPACK SVD up to EXACT_SVD_MAX items; above
    that (or when LAPACK fails to converge, as it did on ml-latest-small's 9,742 items) a
    randomized range finder with power iterations (Halko et al. 2011), which costs a few
    n x n x rank products instead of a full n^3 decomposition."""
    n = matrix.shape[0]
    if n <= EXACT_SVD_MAX:
        try:
            u, s, vt = np.linalg.svd(matrix, full_matrices=False)
            return u[:, :rank], s[:rank], vt[:rank]
        except np.linalg.LinAlgError:
            pass
    rng = np.random.default_rng(seed)
    sketch = matrix @ rng.standard_normal((matrix.shape[1], min(n, rank + 64)))
    for _ in range(3):  # power iterations sharpen the captured range
        q, _ = np.linalg.qr(sketch)
        sketch = matrix @ (matrix.T @ q)
    q, _ = np.linalg.qr(sketch)
    u, s, vt = np.linalg.svd(q.T @ matrix, full_matrices=False)
    return (q @ u)[:, :rank], s[:rank], vt[:rank]


@dataclass
class LinearFactors:
    """A linear item-item model ``B ~= left @ right.T`` applied to a user's recency-weighted
    recent items: the user vector is ``w^T left`` and an item's vector is its row of ``right``,
    so the model's score is one inner product away. EASE and the transition model share it."""

    left: np.ndarray  # n x r
    right: np.ndarray  # n x r
    window: int = 20
    decay: float = 0.9

    def user_vector(self, history: Sequence[int]) -> np.ndarray:
        idx, w = recency_weights(history, self.window, self.decay)
        return (w[:, None] * self.left[idx]).sum(axis=0).astype(np.float32)


def svd_factors(weights: np.ndarray, rank: int, window: int = 20, decay: float = 0.9) -> LinearFactors:
    """Low-rank EASE: the truncated SVD ``U S V^T`` split as ``left = U sqrt(S)``,
    ``right = V sqrt(S)``."""
    rank = min(rank, weights.shape[0])
    u, s, vt = truncated_svd(weights, rank)
    root = np.sqrt(s)
    return LinearFactors((u * root).astype(np.float32), (vt.T * root).astype(np.float32), window, decay)
