"""Exact top-k and rank with seen items excluded, on hand-worked cases."""

import numpy as np
import pytest

from retrieval.exact import rank_among_unseen, top_k_unseen

SCORES = np.array([0.5, 0.9, 0.1, 0.9, 0.3])  # items 0..4


def test_top_k_skips_seen_and_breaks_ties_by_index():
    assert top_k_unseen(SCORES, seen=[], k=3).tolist() == [1, 3, 0]
    assert top_k_unseen(SCORES, seen=[1], k=3).tolist() == [3, 0, 4]
    assert top_k_unseen(SCORES, seen=[1, 1, 3], k=2).tolist() == [0, 4]  # a repeat is one item


def test_top_k_never_pads_with_seen_items():
    assert top_k_unseen(SCORES, seen=[0, 1, 2, 3], k=3).tolist() == [4]
    assert top_k_unseen(SCORES, seen=[], k=10).tolist() == [1, 3, 0, 4, 2]
    with pytest.raises(ValueError, match="k must be"):
        top_k_unseen(SCORES, seen=[], k=0)


def test_rank_counts_ties_against_the_target():
    assert rank_among_unseen(SCORES, seen=[], target=3) == 2  # tied with item 1
    assert rank_among_unseen(SCORES, seen=[1], target=3) == 1
    assert rank_among_unseen(SCORES, seen=[1, 3], target=0) == 1
    assert rank_among_unseen(SCORES, seen=[], target=2) == 5
    assert rank_among_unseen(SCORES, seen=[2], target=2) == 5  # the target is never "seen"
    assert rank_among_unseen(np.zeros(4), seen=[], target=0) == 4  # all alike: no credit
