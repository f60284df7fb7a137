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
