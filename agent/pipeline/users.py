"""What a user owns in Muse and the operations on it, for the routes: their history (with
titles), the listing of users, the likes a new user marks, the onboarding items, and forget-me.
No route reads the store itself; the recommender (``service.MuseAgent``) holds one ``Users``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.catalog import Interaction, Item
from agent.config import Settings
from agent.llm import registry
from agent.pipeline.onboarding import ONBOARDING_ITEMS, OnboardingPicks
from agent.store import EventStore


class UnknownUserError(LookupError):
    """A user id the store holds nothing for."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass
class Forgotten:
    """What forgetting a user removed: rows per store table, rows per exported training-data
    file, and the trained weights that were fitted on their data and still are until retrained
    (no weights are edited: removing one user's influence means training again without them)."""

    deleted: dict[str, int]
    exported_rows: dict[str, int]
    in_model_weights: list[str]

    def found(self) -> bool:
        return any(self.deleted.values()) or any(self.exported_rows.values())


class Users:
    """The user operations over ``store`` (``settings`` says where the trained weights are;
    ``onboarding_picks`` keeps the items a new user is asked about)."""

    def __init__(self, settings: Settings, store: EventStore, onboarding_picks: OnboardingPicks):
        self.settings, self.store, self.onboarding_picks = settings, store, onboarding_picks

    def history(self, user_id: str) -> list[Interaction]:
        """The user's events, oldest first ([] for a user with none)."""
        return self.store.history(user_id)

    def titled_history(self, user_id: str) -> list[tuple[Interaction, str | None]]:
        """Each event of ``user_id`` with its item's title (None for an item no longer in the
        catalog). Raises ``UnknownUserError`` for a user the store does not hold."""
        if not self.store.has_user(user_id):
            raise UnknownUserError(f"unknown user {user_id!r}")
        events = self.store.history(user_id)
        titles = {it.id: it.title for it in self.store.get_items(sorted({e.item_id for e in events}))}
        return [(e, titles.get(e.item_id)) for e in events]

    def listing(
        self, limit: int, users: Sequence[str] | None = None, after: str | None = None
    ) -> list[tuple[str, int]]:
        """(user id, events) of up to ``limit`` users with events, in id order after ``after``;
        only those of ``users`` when given (a client key's own)."""
        return self.store.user_event_counts(limit, users=users, after=after)

    def onboarding(self, k: int = ONBOARDING_ITEMS) -> list[Item]:
        """The items a new user is asked to mark as liked (``pipeline.onboarding``), as the
        store was at the last refresh (``OnboardingPicks``: no request reads the events)."""
        return self.onboarding_picks.get(k)

    def record_likes(self, user_id: str, item_ids: Sequence[str]) -> int:
        """Store a ``like`` of each item by ``user_id`` (what a new user marked): they become
        history at once. Idempotent per (user, item): marking again adds nothing. Returns the
        events added. Raises ``UnknownItemError`` for an id outside the catalog."""
        now = time.time()
        events = [
            Interaction(user_id, i, now, "like", key=f"onboarding|{user_id}|{i}") for i in dict.fromkeys(item_ids)
        ]
        return self.store.add_events(events) if events else 0

    def forget(self, user_id: str) -> Forgotten:
        """Remove ``user_id`` from the exported training data, then from the store (events,
        impressions, the user row, client keys' bindings), and name the trained weights that
        may still reflect them. Exports go first: a crash in between leaves the user in the
        store, so the retried request finds them and finishes. Raises ``UnknownUserError`` when
        nothing of them was found."""
        from agent.store import remove_user_rows

        exported: dict[str, int] = {}
        scrubbed: set[Path] = set()  # the export folders that held rows of this user
        for folder in self.store.exports():
            removed = remove_user_rows(folder, user_id) if folder.is_dir() else {}
            exported |= {str(folder / name): n for name, n in removed.items()}
            scrubbed |= {folder} if removed else set()
        deleted = self.store.forget_user(user_id)
        weights = []
        if deleted["events"] and (self.settings.model_dir / "model.json").exists():
            weights.append(
                f"the retrieval model in {self.settings.model_dir} (fitted on every user's history "
                "by the last `muse index`; the next one refits it without this user)"
            )
        for name, path in sorted(registry.adapters(self.settings).items()):  # the registry now, not at start
            data = registry.read_manifest(path).get("data")
            if data and Path(data).resolve() in scrubbed:
                weights.append(
                    f"ranker adapter {name!r} (trained on {data}; an adapter trained on the "
                    "scrubbed data and promoted replaces it)"
                )
        gone = Forgotten(deleted, exported, weights)
        if not gone.found():
            raise UnknownUserError(f"unknown user {user_id!r}")
        return gone
