"""Beyond-accuracy measures of recommendation lists: coverage, diversity, novelty, popularity bias.

Accuracy (``retrieval.metrics``) asks whether the held-out item was found; these ask what the
lists are like. Each function is small and pure, checked on hand-worked cases. Inputs:

- ``lists``: one list of item ids per user, best first, already cut to the size measured;
- ``popularity``: item id -> number of distinct training users who interacted with it;
- ``n_users``: the number of training users (popularity as a share is ``count / n_users``).

Sources: catalog coverage, Ge, Delgado-Battenfeld and Jannach, "Beyond accuracy: evaluating
recommender systems by coverage and serendipity", RecSys 2010; intra-list diversity, Ziegler et
al., "Improving recommendation lists through topic diversification", WWW 2005 (here with the
Jaccard distance of item categories); novelty as mean self-information, Zhou et al., "Solving
the apparent diversity-accuracy dilemma of recommender systems", PNAS 2010; average
recommendation popularity and popularity lift, Abdollahpouri et al., "The unfairness of
popularity bias in recommendation", RMSE@RecSys 2019, and "The connection between popularity
bias, calibration, and fairness in recommendation", RecSys 2020.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

BEYOND_KEYS = ("coverage", "ild", "novelty", "arp", "popularity_lift")


def catalog_coverage(lists: Sequence[Sequence[str]], n_items: int) -> float:
    """Share of the ``n_items`` catalog items that appear in at least one list."""
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    return len({i for items in lists for i in items}) / n_items


def jaccard_distance(a: Sequence[str], b: Sequence[str]) -> float:
    """``1 - |a ∩ b| / |a ∪ b|`` of two category sets; 0 when both are empty."""
    sa, sb = set(a), set(b)
    union = sa | sb
    return 1.0 - len(sa & sb) / len(union) if union else 0.0


def intra_list_diversity(categories: Sequence[Sequence[str]]) -> float:
    """Mean pairwise Jaccard distance of the categories of one list's items; 0 for fewer than
    two items. ``categories[j]``: the categories of the list's j-th item."""
    pairs = list(itertools.combinations(categories, 2))
    return sum(jaccard_distance(a, b) for a, b in pairs) / len(pairs) if pairs else 0.0


def self_information(item: str, popularity: Mapping[str, int], n_users: int) -> float:
    """``log2(n_users / count)`` bits, the count floored at 1 (an item no training user had is
    as novel as one a single user had)."""
    return math.log2(n_users / max(popularity.get(item, 0), 1))


def novelty(lists: Sequence[Sequence[str]], popularity: Mapping[str, int], n_users: int) -> float:
    """Mean self-information of the listed items, averaged per list then over lists (bits)."""
    per_list = [sum(self_information(i, popularity, n_users) for i in items) / len(items) for items in lists if items]
    return sum(per_list) / len(per_list) if per_list else 0.0


def average_popularity(lists: Sequence[Sequence[str]], popularity: Mapping[str, int], n_users: int) -> float:
    """ARP: the mean share of training users who had each listed item, per list then over lists."""
    per_list = [sum(popularity.get(i, 0) for i in items) / len(items) / n_users for items in lists if items]
    return sum(per_list) / len(per_list) if per_list else 0.0


def summarize_lists(
    lists: Sequence[Sequence[str]],
    histories: Sequence[Sequence[str]],
    categories: Mapping[str, Sequence[str]],
    popularity: Mapping[str, int],
    n_users: int,
    n_items: int,
) -> dict[str, float]:
    """Every measure of ``BEYOND_KEYS`` for one set of lists. ``histories``: the same users'
    histories, for the popularity lift (ARP of the lists over ARP of what the users had: above
    1, the lists lean to more popular items than the users themselves chose)."""
    arp = average_popularity(lists, popularity, n_users)
    had = average_popularity(histories, popularity, n_users)
    ild = [intra_list_diversity([categories.get(i, ()) for i in items]) for items in lists]
    return {
        "coverage": catalog_coverage(lists, n_items),
        "ild": sum(ild) / max(len(ild), 1),
        "novelty": novelty(lists, popularity, n_users),
        "arp": arp,
        "popularity_lift": arp / had if had else 0.0,
    }
