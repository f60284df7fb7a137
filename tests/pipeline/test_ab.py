"""A/B arms by a stable hash of the user id, and engagement per arm from the event store."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from agent.catalog import Interaction, Item
from agent.llm import registry
from agent.pipeline.ab import ab_report, arm_of, bucket


def test_arm_is_stable_balanced_and_salted():
    arms = ["rank-v2", "rank-v3"]
    users = [f"user-{n}" for n in range(4000)]
    first = [arm_of(u, arms) for u in users]
    assert first == [arm_of(u, arms) for u in users]  # same process, same answer
    # another process (Python's own hash() is salted per process; ours must not be)
    code = (
        "from agent.pipeline.ab import arm_of; "
        "print(','.join(arm_of(f'user-{n}', ['rank-v2', 'rank-v3']) for n in range(50)))"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other.split(",") == first[:50]
    share = Counter(first)["rank-v2"] / len(users)
    assert 0.47 < share < 0.53  # 4,000 users: one standard error is 0.008
    moved = sum(arm_of(u, arms) != arm_of(u, arms, salt="other-salt") for u in users) / len(users)
    assert 0.45 < moved < 0.55  # a new salt reshuffles: about half the users change arm
    assert all(0 <= bucket(u, "muse-ab") < 10_000 for u in users[:100])
    with pytest.raises(ValueError, match="at least one arm"):
        arm_of("u", [])


def test_ab_report_counts_engagement_per_arm(store):
    log_two_arms(store)


def log_two_arms(store) -> dict:
    """Impressions and answers of two arms; asserts and returns their hand-counted report."""
    store.upsert_items([Item(i, i.upper()) for i in "abcd"])
    a1 = store.add_impression("u1", ["a", "b"], [1.0, 0.5], "rank-v2")
    a2 = store.add_impression("u2", ["a", "c"], [1.0, 0.5], "rank-v2")
    b1 = store.add_impression("u3", ["b", "d"], [1.0, 0.5], "rank-v3")
    store.add_events(
        [
            Interaction("u1", "a", 5.0, "click", impression_id=a1),
            Interaction("u1", "b", 6.0, "like", impression_id=a1),
            Interaction("u2", "c", 5.0, "skip", impression_id=a2),
            Interaction("u3", "d", 5.0, "rating", 4.5, impression_id=b1),
        ]
    )
    report = ab_report(store.impressions(), store.events())
    assert report == {
        "rank-v2": {
            "impressions": 2,
            "items_shown": 4,
            "engagements": 2,
            "engaged_impressions": 1,
            "engagement_rate": 0.5,
        },
        "rank-v3": {
            "impressions": 1,
            "items_shown": 2,
            "engagements": 1,
            "engaged_impressions": 1,
            "engagement_rate": 1.0,
        },
    }
    return report


def test_muse_finetune_ab_report_writes_its_html_report(tmp_path, monkeypatch, capsys):
    import json

    from agent.cli import main
    from agent.store import SQLiteStore
    from tests.evaluation.test_report import check_self_contained_and_equal

    monkeypatch.setenv("MUSE_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "data").mkdir()
    store = SQLiteStore(tmp_path / "data" / "muse.db")
    expected = log_two_arms(store)
    store.close()
    assert main(["finetune", "ab-report", "--report", str(tmp_path / "ab")]) == 0
    assert json.loads(capsys.readouterr().out) == expected
    rows = json.loads((tmp_path / "ab" / "result.json").read_text())
    assert {arm: {k: rows[arm][k] for k in expected[arm]} for arm in rows} == expected
    check_self_contained_and_equal(tmp_path / "ab" / "index.html", {"arms": rows})


def test_ab_arms_must_be_registered(tiny_registry):
    from agent.config import Settings
    from agent.llm.engine import UnknownAdapterError

    assert registry.ab_arms(Settings(adapters_dir=tiny_registry, ab_adapters="rank-test")) == ["rank-test"]
    with pytest.raises(UnknownAdapterError, match="unknown adapter 'rank-v9'"):
        registry.ab_arms(Settings(adapters_dir=tiny_registry, ab_adapters="rank-test, rank-v9"))
