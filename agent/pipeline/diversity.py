"""MMR re-ranking: trade a little relevance for items that differ from those already picked.

Maximal Marginal Relevance: Carbonell and Goldstein, "The use of MMR, diversity-based reranking
for reordering documents and producing summaries", SIGIR 1998.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mmr(relevance: Sequence[float], vectors: np.ndarray, k: int, diversity: float) -> list[int]:
    """Positions of ``k`` picks. Each pick maximises
    ``(1 - diversity) * relevance - diversity * (max cosine similarity to the picks so far)``,
    with relevance min-max scaled to [0, 1]. ``diversity=0`` keeps the relevance order."""
    if not 0.0 <= diversity <= 1.0:
        raise ValueError(f"diversity must lie in [0, 1], got {diversity}")
    rel = np.asarray(relevance, dtype=np.float64)
    k = min(k, len(rel))
    if diversity == 0.0 or k == 0:
        return [int(i) for i in np.argsort(-rel, kind="stable")[:k]]
    span = rel.max() - rel.min()
    rel = (rel - rel.min()) / span if span > 0 else np.zeros_like(rel)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T
    picked: list[int] = []
    closest = np.zeros(len(rel))  # max similarity of each item to the picks so far
    for _ in range(k):
        gain = (1 - diversity) * rel - diversity * closest
        gain[picked] = -np.inf
        best = int(np.argmax(gain))  # argmax takes the first best: ties keep relevance order
        picked.append(best)
        closest = np.maximum(closest, sim[best])
    return picked
