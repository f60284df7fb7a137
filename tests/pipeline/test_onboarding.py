"""The cold-start set, on a hand-worked catalog."""

from collections import Counter

import pytest

from agent.catalog import Interaction, Item
from agent.pipeline.onboarding import onboarding_items, popularity

# Popularity 9..1 over nine items: tiers of three (a, b, c), (d, e, f), (g, h, i).
ITEMS = [
    Item("a", "A", categories=("Drama",)),
    Item("b", "B", categories=("Comedy", "Romance")),
    Item("c", "C", categories=("Drama", "Crime")),
    Item("d", "D", categories=("Drama",)),
    Item("e", "E", categories=("Horror",)),
    Item("f", "F", categories=("Comedy", "Sci-Fi", "War")),
    Item("g", "G", categories=("Comedy",)),
    Item("h", "H", categories=("Drama", "Western")),
    Item("i", "I", categories=("Drama",)),
    Item("z", "Z", categories=("Musical",)),  # nobody engaged with it
]
COUNTS = Counter({it.id: 9 - n for n, it in enumerate(ITEMS[:9])})


def test_picks_rotate_tiers_and_add_new_categories():
    # Tier 1 (a, b, c): b and c add 2 categories, a 1; b is the more popular of the tie.
    # Tier 2 (d, e, f): f adds Sci-Fi and War (Comedy is covered): 2, d and e 1 each.
    # Tier 3 (g, h, i): h adds Drama and Western: 2; g adds nothing, i 1.
    # Tier 1 again: c adds Crime (1), a nothing.
    got = [it.id for it in onboarding_items(ITEMS, COUNTS, k=4)]
    assert got == ["b", "f", "h", "c"]


def test_unengaged_items_only_fill_a_short_catalog():
    assert "z" not in {it.id for it in onboarding_items(ITEMS, COUNTS, k=9)}
    assert len(onboarding_items(ITEMS, COUNTS, k=10)) == 10  # now z is needed
    assert len(onboarding_items(ITEMS, COUNTS, k=50)) == 10  # never more than the catalog
    with pytest.raises(ValueError, match="k must be"):
        onboarding_items(ITEMS, COUNTS, k=0)


def test_popularity_counts_users_whose_history_holds_the_item():
    events = [
        Interaction("u1", "a", 1.0, "click"),
        Interaction("u1", "a", 2.0, "like"),  # the same user twice: one
        Interaction("u2", "a", 1.0, "view"),
        Interaction("u3", "b", 1.0, "dislike"),  # not history
        Interaction("u4", "c", 1.0, "rating", 1.0),  # a low rating: not history
    ]
    assert popularity(events) == Counter({"a": 2})


class _CountingStore:
    """A store whose every full read is counted."""

    def __init__(self, items, events):
        self._items, self._events, self.reads = list(items), list(events), 0

    def items(self):
        return list(self._items)

    def events(self):
        self.reads += 1
        return list(self._events)


def _wait_for(predicate, seconds=10.0):
    import time

    end = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_kept_picks_read_the_events_once_per_refresh_not_per_request():
    from agent.pipeline.onboarding import OnboardingPicks

    now = [0.0]
    events = [Interaction(f"u{n}", it.id, 1.0, "view") for it in ITEMS[:9] for n in range(COUNTS[it.id])]
    store = _CountingStore(ITEMS, events)
    picks = OnboardingPicks(store, refresh_s=300, clock=lambda: now[0])
    first = [it.id for it in picks.get(4)]
    assert first == ["b", "f", "h", "c"]  # the hand-worked set above, from the store's events
    for _ in range(20):
        assert [it.id for it in picks.get(4)] == first
    assert store.reads == 1  # 21 requests, one read
    store._events += [Interaction(f"v{n}", "z", 2.0, "view") for n in range(20)]  # z is the most popular now
    now[0] = 299.0
    assert [it.id for it in picks.get(4)] == first and store.reads == 1  # not stale yet
    now[0] = 301.0
    picks.get(4)  # stale: a refresh starts in the background, this request gets the last set
    # z leads the first tier now; it comes back as that tier's second pick (Musical, 1 new category)
    _wait_for(lambda: store.reads == 2 and [it.id for it in picks.get(4)] == ["b", "f", "h", "z"])
    with pytest.raises(ValueError, match="k must be"):
        picks.get(0)
