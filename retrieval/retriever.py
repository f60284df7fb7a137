"""Candidate retrieval: a user's history (and an optional text query) to top-k items via Chroma.

- A user with known history: one query vector from ``HybridModel`` against the hybrid
  collection (SASRec + EASE + transition + content fused), text query blended in when given.
- No usable history but a text query: the content collection.
- Neither (cold start): popular-and-recent items.
Seen items and explicitly excluded ids never come back; metadata filters apply to all paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from retrieval.behavior import HybridModel
from retrieval.index import CONTENT, HYBRID, CatalogItem, Filters, ItemIndex


@dataclass(frozen=True)
class Candidate:
    item_id: str
    score: float
    source: str  # "hybrid", "content" or "popular"


class Retriever:
    def __init__(self, index: ItemIndex, model: HybridModel | None, popular: Sequence[str]):
        self.index, self.model = index, model
        self.popular = list(popular)  # item ids, most popular (recency-weighted) first

    def upsert_items(self, items: Sequence[CatalogItem], progress=None) -> int:
        """Index items in both collections: new and changed text is embedded, then hybrid
        vectors are written. Returns how many items were (re-)embedded."""
        embedded = self.index.sync_content(items, progress)
        self.write_hybrid(items)
        return embedded

    def write_hybrid(self, items: Sequence[CatalogItem]) -> None:
        """Hybrid vectors for items whose content is already indexed (zeros in the
        behavioural parts for items the model has not seen)."""
        if self.model is None or not items:
            return
        content = self.index.content_vectors([it.id for it in items])
        fitted = self.model.item_vectors()
        rows = [fitted[self.model.index[it.id]] if it.id in self.model.index
                else self.model.cold_item_vector(content[n]) for n, it in enumerate(items)]
        self.index.upsert_hybrid(items, np.stack(rows))

    def retrieve(
        self,
        history: Sequence[str],
        k: int = 20,
        filters: Filters | None = None,
        query: str | None = None,
        query_weight: float = 1.0,
    ) -> list[Candidate]:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        filters = filters or Filters()
        exclude = set(history) | set(filters.exclude_ids)
        text = self.index.encoder.encode([query])[0] if query else None
        known = self.model is not None and any(i in self.model.index for i in history)
        if known:
            vector = self.model.query_vectors([list(history)], text=text, text_weight=query_weight)[0]
            return self._search(HYBRID, vector, k, filters, exclude)
        if text is not None:
            return self._search(CONTENT, text, k, filters, exclude)
        return self._popular(k, filters, exclude)

    def _search(self, collection, vector, k, filters, exclude) -> list[Candidate]:
        # Ask for enough extra results that dropping the excluded ones still leaves k.
        hits = self.index.search(collection, vector, k + len(exclude), filters)
        kept = [Candidate(i, s, "hybrid" if collection == HYBRID else "content")
                for i, s in hits if i not in exclude]
        return kept[:k]

    def _popular(self, k, filters, exclude) -> list[Candidate]:
        ranked = [i for i in self.popular if i not in exclude]
        if filters.where() is not None and ranked:
            allowed = set(self.index.content.get(ids=ranked, where=filters.where(), include=[])["ids"])
            ranked = [i for i in ranked if i in allowed]
        return [Candidate(i, 1.0 / (r + 1), "popular") for r, i in enumerate(ranked[:k])]


def recent_popularity(events: Sequence[tuple[str, float]], half_life_days: float = 60.0) -> list[str]:
    """Item ids by interaction count, each interaction weighted by its age relative to the
    newest one (halving every ``half_life_days``): popular *and* recent first."""
    if not events:
        return []
    newest = max(ts for _, ts in events)
    score: dict[str, float] = {}
    for item, ts in events:
        score[item] = score.get(item, 0.0) + 0.5 ** ((newest - ts) / (half_life_days * 86400))
    return sorted(score, key=lambda i: (-score[i], i))
