"""Generate the synthetic interaction log that goes with the demo catalog.

Reads ``demo_items.jsonl`` (next to this file) and writes ``demo_interactions.jsonl``
(also next to this file): one JSON object per line with the keys ``user_id``, ``item_id``,
``timestamp`` (ISO-8601 UTC, e.g. ``2025-03-14T19:02:11Z``), ``kind`` and ``value``.

How the data is made:

- 40 users, ``demo-user-01`` .. ``demo-user-40``. Each gets a taste profile: one of a few
  archetypes (two favourite genres and a preferred tone), sometimes widened by a third genre.
- Each user has 8-30 interactions. About 80% are drawn from items that share a genre with the
  profile (items that also match the preferred tone are more likely); the rest are drawn at
  random from the catalog, preferring items no earlier user has touched, so that every item
  except the new arrivals gets at least one interaction. No user touches an item twice.
- Most interactions are star ratings (0.5-5.0 in half steps): high for items matching the
  taste, a bonus for the preferred tone, low otherwise. Likes, views and clicks carry 1.0.
- Timestamps are spread over 2025 and strictly increase for each user.
- The last ten items (``demo-191`` .. ``demo-200``, the "new arrivals") are never used, so the
  demo always has cold-start items.

The script uses only the standard library and a fixed seed (``random.Random(7)``), so every run
writes the same file. Run it from the repository root:

    python agent/data/make_demo_interactions.py
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ITEMS_PATH = HERE / "demo_items.jsonl"
OUT_PATH = HERE / "demo_interactions.jsonl"

SEED = 7
N_USERS = 40
MIN_INTERACTIONS, MAX_INTERACTIONS = 8, 30
TASTE_SHARE = 0.8  # fraction of a user's interactions drawn from items matching their taste
COLD_START_IDS = {f"demo-{n:03d}" for n in range(191, 201)}  # never interacted with

# (favourite genres, preferred tone): the archetypes users are built from.
ARCHETYPES = [
    (["Comedy", "Romance"], "light"),
    (["Sci-Fi", "Thriller"], "dark"),
    (["Animation", "Family"], "uplifting"),
    (["Western", "Drama"], "tense"),
    (["Documentary", "Drama"], "thoughtful"),
    (["Crime", "Mystery"], "tense"),
    (["Horror", "Thriller"], "dark"),
    (["Fantasy", "Adventure"], "light"),
    (["Musical", "Romance"], "uplifting"),
    (["War", "Drama"], "thoughtful"),
    (["Action", "Adventure"], "tense"),
    (["Comedy", "Fantasy"], "quirky"),
]
ALL_GENRES = sorted({g for genres, _ in ARCHETYPES for g in genres})

# kind -> relative frequency; ratings dominate.
KIND_WEIGHTS = {"rating": 70, "like": 12, "view": 10, "click": 8}

YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
SECONDS_IN_YEAR = 365 * 24 * 3600


def load_items(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def make_profile(rng: random.Random) -> tuple[set[str], str]:
    genres, tone = rng.choice(ARCHETYPES)
    favourites = set(genres)
    if rng.random() < 0.5:  # widen some profiles with a third genre
        favourites.add(rng.choice([g for g in ALL_GENRES if g not in favourites]))
    return favourites, tone


def affinity(item: dict, favourites: set[str], tone: str) -> int:
    """0 for no shared genre; otherwise shared genres, plus one for the preferred tone."""
    shared = len(favourites.intersection(item["categories"]))
    if shared == 0:
        return 0
    return shared + (1 if item["metadata"]["tone"] == tone else 0)


def weighted_sample(rng: random.Random, pool: list[dict], weights: list[int], k: int) -> list:
    """Pick up to k distinct items from pool, each draw proportional to its weight."""
    pool, weights, picked = list(pool), list(weights), []
    while pool and len(picked) < k:
        i = rng.choices(range(len(pool)), weights=weights)[0]
        picked.append(pool.pop(i))
        weights.pop(i)
    return picked


def star_rating(rng: random.Random, item: dict, favourites: set[str], tone: str) -> float:
    if affinity(item, favourites, tone) > 0:
        stars = rng.choice([3.0, 3.5, 4.0, 4.0, 4.5, 4.5, 5.0])
    else:
        stars = rng.choice([0.5, 1.0, 1.5, 2.0, 2.0, 2.5, 2.5, 3.0, 3.5])
    if item["metadata"]["tone"] == tone:
        stars += 0.5
    return min(5.0, max(0.5, stars))


def user_interactions(rng: random.Random, user_id: str, items: list[dict], untouched: set[str]) -> list[dict]:
    favourites, tone = make_profile(rng)
    n = rng.randint(MIN_INTERACTIONS, MAX_INTERACTIONS)
    n_taste = round(n * TASTE_SHARE)

    matching = [it for it in items if affinity(it, favourites, tone) > 0]
    chosen = weighted_sample(rng, matching, [affinity(it, favourites, tone) for it in matching], n_taste)
    chosen_ids = {it["id"] for it in chosen}
    rest = [it for it in items if it["id"] not in chosen_ids]
    fresh = [it for it in rest if it["id"] in untouched]
    picks = rng.sample(fresh, min(n - len(chosen), len(fresh)))
    picked_ids = {it["id"] for it in picks}
    rest = [it for it in rest if it["id"] not in picked_ids]
    chosen += picks + rng.sample(rest, n - len(chosen) - len(picks))
    untouched.difference_update(it["id"] for it in chosen)
    rng.shuffle(chosen)

    seconds = sorted(rng.sample(range(SECONDS_IN_YEAR), n))  # distinct, so strictly increasing
    kinds, kind_weights = list(KIND_WEIGHTS), list(KIND_WEIGHTS.values())
    rows = []
    for item, sec in zip(chosen, seconds):
        kind = rng.choices(kinds, weights=kind_weights)[0]
        value = star_rating(rng, item, favourites, tone) if kind == "rating" else 1.0
        stamp = (YEAR_START + timedelta(seconds=sec)).strftime("%Y-%m-%dT%H:%M:%SZ")
        rows.append({"user_id": user_id, "item_id": item["id"], "timestamp": stamp, "kind": kind, "value": value})
    return rows


def main() -> None:
    rng = random.Random(SEED)
    items = [it for it in load_items(ITEMS_PATH) if it["id"] not in COLD_START_IDS]
    untouched = {it["id"] for it in items}
    rows = []
    for u in range(1, N_USERS + 1):
        rows += user_interactions(rng, f"demo-user-{u:02d}", items, untouched)
    if untouched:
        print(f"warning: {len(untouched)} catalog items got no interactions: {sorted(untouched)}")
    with OUT_PATH.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    print(f"wrote {len(rows)} interactions for {N_USERS} users to {OUT_PATH}")


if __name__ == "__main__":
    main()
