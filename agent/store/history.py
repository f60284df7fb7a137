"""A user's history, defined once: the events that count (``catalog.in_history``, which reads
``catalog.POLARITY``), as item ids in time order, each item at its first occurrence."""

from __future__ import annotations

from agent.catalog import Interaction, in_history
from agent.store.sql import EventStore


def user_sequences(events: list[Interaction]) -> dict[str, list[str]]:
    """Each user's history: ``{user_id: [item_id, ...]}``, oldest first; events that do not
    count (``catalog.in_history`` false) are left out, and a repeat keeps the first occurrence.
    Ties in time keep the events' order in ``events``."""
    by_user: dict[str, list[tuple[float, int, str]]] = {}
    for n, e in enumerate(events):
        if not in_history(e):
            continue
        by_user.setdefault(e.user_id, []).append((e.timestamp, n, e.item_id))
    out = {}
    for user, rows in by_user.items():
        seen: set[str] = set()
        out[user] = [i for _, _, i in sorted(rows) if not (i in seen or seen.add(i))]
    return out


def history_of(store: EventStore, user_id: str) -> list[str]:
    """``user_id``'s history in ``store`` (``user_sequences`` of their events); [] for a user
    with none."""
    return user_sequences(store.history(user_id)).get(user_id, [])
