"""Metrics on hand-worked cases (one relevant item per user)."""

import math

import pytest

from retrieval.metrics import mrr_at, ndcg_at, rank_of, recall_at, summarize


def test_recall_counts_hits_within_the_cutoff():
    assert recall_at(1, 5) == 1.0
    assert recall_at(5, 5) == 1.0
    assert recall_at(6, 5) == 0.0
    assert recall_at(None, 5) == 0.0


def test_ndcg_discounts_by_log2_of_rank_plus_one():
    assert ndcg_at(1, 10) == 1.0
    assert ndcg_at(3, 10) == pytest.approx(0.5)  # 1 / log2(4)
    assert ndcg_at(7, 10) == pytest.approx(1 / 3)  # 1 / log2(8)
    assert ndcg_at(11, 10) == 0.0


def test_mrr_is_reciprocal_rank_cut_off():
    assert mrr_at(4, 10) == 0.25
    assert mrr_at(10, 10) == 0.1
    assert mrr_at(11, 10) == 0.0


def test_rank_of_is_one_based_or_none():
    assert rank_of("c", ["a", "b", "c"]) == 3
    assert rank_of("z", ["a", "b"]) is None


def test_summarize_averages_over_users():
    # Three users: hit at 1, hit at 7, miss.
    m = summarize([1, 7, None])
    assert m["R@5"] == pytest.approx(1 / 3)
    assert m["R@10"] == pytest.approx(2 / 3)
    assert m["N@10"] == pytest.approx((1 + 1 / math.log2(8)) / 3)
    assert m["M@10"] == pytest.approx((1 + 1 / 7) / 3)
    assert m["M@5"] == pytest.approx(1 / 3)
    assert m["R@20"] == pytest.approx(2 / 3)


def test_summarize_refuses_no_users():
    with pytest.raises(ValueError):
        summarize([])
