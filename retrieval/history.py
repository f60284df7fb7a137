"""How a user's history becomes weights: recent items count most.

On MovieLens the next item is far better predicted by the last few items than by the whole
history, so every behavioural query weights the last ``window`` items by ``decay ** age``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def recency_weights(history: Sequence[int], window: int = 20, decay: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """(item indices, weights) for the last ``window`` items; the newest has weight 1.

    An item seen twice in the window keeps the weight of its newest occurrence.
    """
    recent = list(history)[-window:]
    weights: dict[int, float] = {}
    for age, item in enumerate(reversed(recent)):
        weights.setdefault(item, decay**age)
    idx = np.fromiter(weights.keys(), dtype=np.int64, count=len(weights))
    return idx, np.fromiter(weights.values(), dtype=np.float64, count=len(weights))
