"""Interactive cold start: the small, diverse set of items a new user is asked to mark as liked.

A new user has no history, so retrieval can only offer popularity or a text query. Asking
them to pick a few items they like ("preference elicitation") gives retrieval a history at
once. The set is chosen by code, not by hand, to spread over two axes:

- popularity: the items anyone engaged with are cut into three tiers by the number of users
  who engaged (the best-known third, the middle third, the rest), and the picks take the
  tiers in turn, so the set holds well-known items a newcomer can judge and less-known ones
  that say more about taste;
- categories: within its tier, each pick is the item adding the most categories not yet
  covered by earlier picks (greedy maximum coverage), ties going to the more popular item,
  then to the smaller id.

The same catalog and events always give the same set. See Rashid et al., "Getting to know
you: learning new user preferences in recommender systems", IUI 2002, for popularity- and
entropy-based choices of items to ask new users about.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence

from agent.catalog import Interaction, Item, in_history

ONBOARDING_ITEMS = 12  # items offered to a new user
TIERS = 3  # popularity tiers the picks rotate through


def popularity(events: Iterable[Interaction]) -> Counter:
    """Item id -> number of distinct users whose history holds it (``catalog.in_history``)."""
    users: dict[str, set[str]] = {}
    for e in events:
        if in_history(e):
            users.setdefault(e.item_id, set()).add(e.user_id)
    return Counter({item: len(u) for item, u in users.items()})


def onboarding_items(items: Sequence[Item], counts: Counter, k: int = ONBOARDING_ITEMS) -> list[Item]:
    """``k`` items spread over popularity tiers and categories (see the module docstring), in
    the order chosen. Items nobody engaged with are used only when too few others exist.
    Raises ``ValueError`` for ``k < 1``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    ranked = sorted(items, key=lambda it: (-counts.get(it.id, 0), it.id))
    known = [it for it in ranked if counts.get(it.id, 0) > 0]
    pool = known if len(known) >= k else ranked
    size = -(-len(pool) // TIERS)  # ceil: the last tier may be shorter
    tiers = [pool[t * size : (t + 1) * size] for t in range(TIERS)]
    covered: set[str] = set()
    chosen: list[Item] = []
    turn = 0
    while len(chosen) < min(k, len(pool)):
        taken = {it.id for it in chosen}
        tier = [it for it in tiers[turn % TIERS] if it.id not in taken]
        turn += 1
        if not tier:
            continue
        # max() keeps the first of equals: the tier is already in popularity order.
        best = max(tier, key=lambda it: len(set(it.categories) - covered))
        chosen.append(best)
        covered |= set(best.categories)
    return chosen


class OnboardingPicks:
    """The onboarding items, kept, so no request reads the store's events: the popularity behind
    them is computed from the whole store once at start (in a background thread), then again at
    most every ``refresh_s`` seconds and after a catalog change, each time in the background
    while requests get the last result; only a request that comes before the first result waits
    for it. ``store``: an event store (``items``, ``events``). Thread-safe."""

    def __init__(self, store, refresh_s: float, clock=time.monotonic):
        self.store, self.refresh_s, self.clock = store, refresh_s, clock
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._snapshot: tuple[list[Item], Counter] = ([], Counter())
        self._picks: dict[int, list[Item]] = {}
        self._computed_at = -float("inf")
        self._running = False
        self.refresh()

    def refresh(self) -> None:
        """Recompute in the background (at once, unless a recomputation is running)."""
        with self._lock:
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._compute, name="muse-onboarding", daemon=True).start()

    def _compute(self) -> None:
        try:
            snapshot = (self.store.items(), popularity(self.store.events()))
            with self._lock:
                self._snapshot, self._picks, self._computed_at = snapshot, {}, self.clock()
        finally:
            with self._lock:
                self._running = False
            self._ready.set()

    def get(self, k: int = ONBOARDING_ITEMS, timeout: float = 60.0) -> list[Item]:
        """``onboarding_items`` of the last snapshot; starts a refresh when it is older than
        ``refresh_s``. Raises ``ValueError`` for ``k < 1``, ``TimeoutError`` when the first
        snapshot is not ready within ``timeout`` seconds."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the onboarding items were not computed within {timeout:g} s")
        if self.clock() - self._computed_at > self.refresh_s:
            self.refresh()
        with self._lock:
            if k not in self._picks:
                self._picks[k] = onboarding_items(*self._snapshot, k)
            return self._picks[k]
