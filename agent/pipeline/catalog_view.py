"""What the pipeline keeps of the catalog, read from the store once at start and kept current as
items are added: its categories, the titles texts are checked against, the vocabulary the
conversation reader links names with, and the reader itself."""

from __future__ import annotations

from collections.abc import Sequence

from agent.catalog import Item
from agent.pipeline.grounding import GroundingCheck
from agent.pipeline.reader import ConversationReader, Vocabulary
from agent.store import EventStore
from retrieval.index import Filters


class CatalogView:
    """``categories``: sorted, every item's; ``grounding``: the titles a text may name;
    ``vocabulary`` and ``reader``: the conversation reader over the catalog; ``warm_items``:
    three items with descriptions the LLM warm-up writes about. ``popular``: item ids, most popular
    first (the reader's tie-break between equal titles)."""

    def __init__(self, store: EventStore, popular: Sequence[str]):
        items = store.items()
        self.categories = sorted({c for it in items for c in it.categories})
        self.grounding = GroundingCheck(it.title for it in items)
        self.vocabulary = Vocabulary(items, popular)
        self.reader = ConversationReader(self.vocabulary, store.get_items)
        self.warm_items = [it for it in items if it.text][:3]

    def add(self, items: Sequence[Item]) -> None:
        """Items were added to the store (or changed): the views learn their titles and categories."""
        self.grounding.add(it.title for it in items)
        self.vocabulary.add(items)
        self.categories = sorted(set(self.categories) | {c for it in items for c in it.categories})

    def nothing_matches(self, filters: Filters) -> str:
        """Why an ask has no candidates, in words a client can act on."""
        unknown = [c for c in filters.categories if c not in self.categories]
        if unknown and len(unknown) == len(filters.categories):
            return (
                f"no item in the catalog has the category {unknown[0]!r}"
                if len(unknown) == 1
                else f"no item in the catalog has any of the categories {unknown}"
            )
        if filters.where() is not None:
            return "no item matches the filters outside the user's history, dislikes and exclusions"
        return "every item in the catalog is in the user's history, dislikes or exclusions"
