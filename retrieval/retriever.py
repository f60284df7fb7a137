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

from retrieval.hybrid import HybridModel
from retrieval.index import CONTENT, HYBRID, CatalogItem, Filters, ItemIndex


@dataclass(frozen=True)
class Candidate:
    item_id: str
    score: float
    source: str  # "hybrid", "content", "popular" or "catalog" (matches the filters, not yet popular)


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
        rows = [
            fitted[self.model.index[it.id]] if it.id in self.model.index else self.model.cold_item_vector(content[n])
            for n, it in enumerate(items)
        ]
        self.index.upsert_hybrid(items, np.stack(rows))

    def retrieve(
        self,
        history: Sequence[str],
        k: int = 20,
        filters: Filters | None = None,
        query: str | None = None,
        query_weight: float = 1.0,
        disliked: Sequence[str] = (),
    ) -> list[Candidate]:
        """Up to ``k`` candidates for a user, best first, none of them in ``history``,
        ``disliked`` or ``filters.exclude_ids``, all matching ``filters``.

        - ``history``: the user's engaged item ids, oldest first;
        - ``query``: free text, blended into the query vector (``query_weight``);
        - ``disliked``: items the user turned down; besides being excluded, they push the query
          vector away (``away_from``).

        A user the fitted model knows is searched in the hybrid collection; an unknown one with
        a query in the content collection; anyone else gets the popular items, then, if fewer
        than ``k`` match the filters, other matching catalog items (so a new item in a new
        category is reachable at once). An empty list means nothing matches. Raises
        ``ValueError`` for ``k`` < 1."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        filters = filters or Filters()
        exclude = set(history) | set(filters.exclude_ids) | set(disliked)
        text = self.index.encoder.encode([query])[0] if query else None
        known = self.model is not None and any(i in self.model.index for i in history)
        if known:
            vector = self.model.query_vectors([list(history)], text=text, text_weight=query_weight)[0]
            vector = away_from(vector, self.index.vectors(HYBRID, disliked))
            return self._search(HYBRID, vector, k, filters, exclude)
        if text is not None:
            return self._search(CONTENT, away_from(text, self.index.vectors(CONTENT, disliked)), k, filters, exclude)
        return self._popular(k, filters, exclude)

    def _search(self, collection, vector, k, filters, exclude) -> list[Candidate]:
        # Ask for enough extra results that dropping the excluded ones still leaves k.
        hits = self.index.search(collection, vector, k + len(exclude), filters)
        kept = [Candidate(i, s, "hybrid" if collection == HYBRID else "content") for i, s in hits if i not in exclude]
        return kept[:k]

    def _popular(self, k, filters, exclude) -> list[Candidate]:
        only = None if filters.only_ids is None else set(filters.only_ids)
        ranked = [i for i in self.popular if i not in exclude and (only is None or i in only)]
        if filters.where() is not None and ranked:
            # the ids matching the filter, not the popular ids looked up with it: on ml-latest-small
            # Chroma took 24.7 s for get(ids=<9,742 ids>, where=Comedy) and 0.031 s for get(where)
            allowed = set(self.index.content.get(where=filters.where(), include=[])["ids"])
            ranked = [i for i in ranked if i in allowed]
        out = [Candidate(i, 1.0 / (r + 1), "popular") for r, i in enumerate(ranked[:k])]
        if len(out) < k and only != set():  # items nobody has touched yet (new ones) come after the popular ones
            taken = exclude | {c.item_id for c in out}
            more = self.index.content.get(
                ids=filters.only_ids, where=filters.where(), limit=k + len(taken), include=[]
            )["ids"]
            out += [Candidate(i, 0.0, "catalog") for i in more if i not in taken][: k - len(out)]
        return out


# Rocchio's usual weight on non-relevant documents is 0.15-0.25. On ml-latest-small's validation
# positions (items rated <= 2 before them as the dislikes; docs/negative_feedback_probe.py) 0.1
# changed N@10 by +0.0015 ± 0.0018 and 0.25 by -0.0031 ± 0.0030, so the smaller one.
DISLIKE_WEIGHT = 0.1


def away_from(vector: np.ndarray, disliked: np.ndarray, weight: float = DISLIKE_WEIGHT) -> np.ndarray:
    """The query ``vector`` (shape ``(d,)``) moved away from the items of ``disliked`` (shape
    ``(n, d)``, any scale): minus ``weight`` x its own norm x the mean of their unit vectors, so
    their inner product with the query falls by ``weight * |vector| * mean cosine`` and items like
    them fall with them. The negative term of Rocchio's relevance feedback (Rocchio, "Relevance
    feedback in information retrieval", 1971). With no disliked items, ``vector`` unchanged."""
    if len(disliked) == 0:
        return vector
    unit = disliked / np.maximum(np.linalg.norm(disliked, axis=1, keepdims=True), 1e-12)
    return (vector - weight * float(np.linalg.norm(vector)) * unit.mean(axis=0)).astype(vector.dtype)


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
