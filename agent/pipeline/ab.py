"""A/B assignment of users to ranker adapters, by a stable hash of the user id.

The same user lands in the same arm on every request, in every process and after a restart
(sha256, not Python's per-process ``hash``), and changing the salt reshuffles everyone at once.
Every impression records the adapter that ranked it, so ``muse finetune ab-report`` can read
engagement per arm straight from the event store.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence

from agent.catalog import Impression, Interaction, reaction

BUCKETS = 10_000


def bucket(user_id: str, salt: str) -> int:
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def arm_of(user_id: str, arms: Sequence[str], salt: str = "muse-ab") -> str:
    """One of ``arms`` (equal shares) for this user, the same every time."""
    if not arms:
        raise ValueError("an A/B split needs at least one arm")
    return arms[bucket(user_id, salt) * len(arms) // BUCKETS]


def ab_report(impressions: Sequence[Impression], events: Sequence[Interaction]) -> dict[str, dict]:
    """Per arm (the adapter recorded with each impression): impressions, items shown, engaged
    events answering them, and the share of impressions with at least one engagement."""
    engaged: Counter = Counter()
    engaged_impressions: set[str] = set()
    for e in events:
        if e.impression_id and reaction(e) == "pos":
            engaged[e.impression_id] += 1
            engaged_impressions.add(e.impression_id)
    arms: dict[str, dict] = {}
    for imp in impressions:
        arm = arms.setdefault(
            imp.model, {"impressions": 0, "items_shown": 0, "engagements": 0, "engaged_impressions": 0}
        )
        arm["impressions"] += 1
        arm["items_shown"] += len(imp.item_ids)
        arm["engagements"] += engaged[imp.id]
        arm["engaged_impressions"] += imp.id in engaged_impressions
    for arm in arms.values():
        arm["engagement_rate"] = round(arm["engaged_impressions"] / arm["impressions"], 4)
    return arms
