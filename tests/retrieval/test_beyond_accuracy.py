"""Beyond-accuracy measures on hand-worked lists."""

import math

import pytest

from retrieval.beyond_accuracy import (
    average_popularity,
    catalog_coverage,
    intra_list_diversity,
    jaccard_distance,
    novelty,
    summarize_lists,
)

POP = {"a": 8, "b": 4, "c": 2, "d": 1}  # of 8 training users; "e" nobody had
LISTS = [["a", "b"], ["a", "c"]]


def test_coverage():
    assert catalog_coverage(LISTS, 5) == pytest.approx(3 / 5)
    assert catalog_coverage([[]], 5) == 0.0
    with pytest.raises(ValueError):
        catalog_coverage(LISTS, 0)


def test_intra_list_diversity_by_category_jaccard():
    assert jaccard_distance(["Drama"], ["Drama"]) == 0.0
    assert jaccard_distance(["Drama", "Crime"], ["Drama"]) == pytest.approx(0.5)
    assert jaccard_distance([], []) == 0.0
    # pairs: (x, y) 0.5, (x, z) 1.0, (y, z) 1.0 -> 2.5 / 3
    assert intra_list_diversity([["Drama", "Crime"], ["Drama"], ["Comedy"]]) == pytest.approx(2.5 / 3)
    assert intra_list_diversity([["Drama"]]) == 0.0


def test_novelty_and_average_popularity():
    # a: log2(8/8) = 0, b: 1, c: 2, e: log2(8/1) = 3 (floored count)
    assert novelty(LISTS, POP, 8) == pytest.approx(((0 + 1) / 2 + (0 + 2) / 2) / 2)
    assert novelty([["e"]], POP, 8) == pytest.approx(3.0)
    # ARP: (8+4)/2/8 = 0.75 and (8+2)/2/8 = 0.625
    assert average_popularity(LISTS, POP, 8) == pytest.approx((0.75 + 0.625) / 2)


def test_summary_and_popularity_lift():
    got = summarize_lists(LISTS, [["d"], ["c"]], {"a": ["X"], "b": ["Y"], "c": ["X"]}, POP, 8, 5)
    assert got["coverage"] == pytest.approx(0.6)
    assert got["ild"] == pytest.approx((1.0 + 0.0) / 2)
    # histories' ARP: (1/8 + 2/8) / 2 = 0.1875
    assert got["popularity_lift"] == pytest.approx(((0.75 + 0.625) / 2) / 0.1875)
    assert math.isfinite(got["novelty"])
