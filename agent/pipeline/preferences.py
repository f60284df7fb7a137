"""Soft preferences: what a request asks for softly ("a comedy, ideally from the 90s":
``reader.SOFT``) re-weights the candidates instead of filtering them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from agent.pipeline.ranker import standardize
from agent.pipeline.reader import Constraints

# A candidate a soft preference admits gains this many standard deviations of the retrieval
# scores: enough to lift a good match over most of the fetched list, not over the best matches
# (docs/chat.md, "Soft preferences", shows the share of picks meeting it at other weights).
PREFERENCE_BOOST = 1.0


def prefer(candidates: Sequence, items: dict, preferences: Constraints, boost: float | None = None) -> list:
    """``candidates`` (``retrieval.Candidate``, best first) re-scored by a soft preference:
    z(retrieval score) plus ``boost`` (default ``PREFERENCE_BOOST``) for each one whose item
    ``preferences`` admits, best first (ties keep retrieval order). Candidates whose item is not
    in ``items`` are dropped."""
    boost = PREFERENCE_BOOST if boost is None else boost
    kept = [c for c in candidates if c.item_id in items]
    if not kept:
        return []
    z = standardize([c.score for c in kept])
    scored = [replace(c, score=float(v) + boost * preferences.admits(items[c.item_id])) for c, v in zip(kept, z)]
    return sorted(scored, key=lambda c: -c.score)
