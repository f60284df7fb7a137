"""What a pick's texts may draw on (``Evidence``): the pick, the history items its explanation
cites (``choose_evidence``), how retrieval found it, and how each cited item came in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from agent.catalog import Item

EVIDENCE_ITEMS = 2  # history items cited per explanation


@dataclass
class Evidence:
    """What a recommendation's text may draw on: the item, and the history items it cites."""

    item: Item
    history: list[Item]  # the user's items chosen as evidence, best first (may be empty)
    # how retrieval found the item (retrieval.retriever.Candidate.source): what an explanation
    # without history may say about it
    source: str = "popular"
    # how each cited item came in (catalog.CITED_AS for the stored history; "liked" or "asked"
    # for one the chat named): "watched", "liked", "looked at" or "asked"; not listed: watched
    said: dict[str, str] = field(default_factory=dict)

    @property
    def shared_categories(self) -> list[str]:
        """The item's categories that a cited history item has too, in the item's order."""
        theirs = {c for h in self.history for c in h.categories}
        return [c for c in self.item.categories if c in theirs]

    @property
    def allowed_titles(self) -> list[str]:
        """The titles its texts may name: the item and the cited history items."""
        return [self.item.title] + [h.title for h in self.history]


def choose_evidence(item: Item, recent: Sequence[Item], similarity: np.ndarray, n: int = EVIDENCE_ITEMS) -> list[Item]:
    """The ``n`` history items to cite for ``item``: those sharing a category with it first
    (so the explanation can say what they have in common), each group by content similarity
    (``similarity[j]``: cosine of ``recent[j]`` to the item), most similar first."""
    mine = set(item.categories)
    key = [(-bool(mine & set(h.categories)), -float(s), j) for j, (h, s) in enumerate(zip(recent, similarity))]
    return [recent[j] for *_, j in sorted(key)[:n]]
