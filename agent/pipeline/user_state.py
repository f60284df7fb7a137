"""The user's state for one request, built once from the store (as Gorse's per-request
recommender loads a user's feedback once and derives its exclude set in the constructor): their
history, the seeds the request adds to it, what they turned down, and how every item they could
be told about came in."""

from __future__ import annotations

from dataclasses import dataclass

from agent.catalog import Interaction, cited_as, turned_down
from agent.pipeline.answer import Ask
from agent.store import EventStore
from agent.store.history import user_sequences


@dataclass(frozen=True)
class UserState:
    """``history``: the user's stored item ids, oldest first; ``seeds``: the ask's "more like
    this" items outside it; ``context``: history then seeds (what retrieval and the ranker read,
    newest last); ``disliked``: turned down in events or in words, never a seed; ``came_in``:
    item id -> how it came in ("watched", "liked", ... from ``catalog.CITED_AS``; "asked" or the
    reader's word for a seed), so no explanation calls a film watched that was not."""

    events: list[Interaction]
    history: list[str]
    seeds: list[str]
    disliked: list[str]
    came_in: dict[str, str]

    @property
    def context(self) -> list[str]:
        return self.history + self.seeds

    @classmethod
    def load(cls, store: EventStore, ask: Ask) -> UserState:
        """Read ``ask.user_id``'s events once and derive the rest (a user with none: all empty
        but the ask's own seeds and dislikes)."""
        events = store.history(ask.user_id)
        history = user_sequences(events).get(ask.user_id, [])
        seeds = [i for i in ask.like_ids if i not in history]
        disliked = [i for i in dict.fromkeys(turned_down(events) + ask.disliked_ids) if i not in seeds]
        came_in = cited_as(events) | {h: ask.said.get(h, "asked") for h in seeds}
        return cls(events, history, seeds, disliked, came_in)
