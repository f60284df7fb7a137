"""Accuracy per group, on hand-worked cases."""

import math

import pytest

from agent.evaluation.breakdown import history_bucket, history_labels, ndcg_by_group, popularity_tiers


def test_history_buckets():
    assert [history_bucket(n) for n in (0, 19, 20, 49, 50, 249, 250, 5000)] == [
        "0-19", "0-19", "20-49", "20-49", "50-99", "100-249", "250+", "250+",
    ]  # fmt: skip
    assert history_labels() == ["0-19", "20-49", "50-99", "100-249", "250+"]
    with pytest.raises(ValueError):
        history_bucket(-1)


def test_popularity_tiers_by_rank():
    counts = {f"i{n}": 10 - n for n in range(10)}  # i0 most popular
    tiers = popularity_tiers(counts, [f"i{n}" for n in range(10)])
    assert [tiers[f"i{n}"].split()[0] for n in range(10)] == ["head"] * 2 + ["middle"] * 3 + ["tail"] * 5


def test_ndcg_by_group():
    # users 0 and 2 in "a", user 1 in "b"; model m ranks them 1, 3, None
    rows = ndcg_by_group(["a", "b", "a"], {"m": [1, 3, None]}, ["a", "b", "c"])
    assert rows == [{"bucket": "a", "users": 2, "m": 0.5}, {"bucket": "b", "users": 1, "m": 1 / math.log2(4)}]
