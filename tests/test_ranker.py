"""The ranker: prompt, label scores for every candidate, fusion and the permutation property."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from agent.catalog import Item
from agent.llm.engine import UnknownAdapterError, single_token_ids
from agent.llm.transformers_engine import TransformersEngine
from agent.ranker import (
    LABELS,
    PromptConfig,
    Ranker,
    RankRequest,
    display_title,
    fuse,
    label_distribution,
    order,
    rank_conversation,
)


def test_label_distribution_is_a_softmax_over_labels_only():
    # Full-vocabulary log-probs of 3 labels: p = 0.2, 0.1, 0.1 -> 0.5, 0.25, 0.25 among labels.
    out = label_distribution(np.log([0.2, 0.1, 0.1]))
    assert np.allclose(np.exp(out), [0.5, 0.25, 0.25])


def test_fusion_weight_zero_is_retrieval_order_and_one_is_llm_order():
    retrieval = [3.0, 2.0, 1.0, 0.5]
    llm = [-3.0, -0.1, -2.0, -1.0]
    assert order(fuse(retrieval, llm, 0.0)) == [0, 1, 2, 3]
    assert order(fuse(retrieval, llm, 1.0)) == [1, 3, 2, 0]
    with pytest.raises(ValueError, match="fusion weight"):
        fuse(retrieval, llm, 1.5)


def test_order_breaks_ties_by_retrieval_position():
    assert order([1.0, 2.0, 1.0, 2.0]) == [1, 3, 0, 2]


def test_prompt_lists_recent_history_and_labelled_candidates():
    history = [f"Old {n}" for n in range(12)]
    conv = rank_conversation(history, ["Alien (1979)", "Babe (1995)"], PromptConfig(history_items=8))
    user = conv[-1]["content"]
    assert "Old 3" not in user and "Old 4" in user and "Old 11" in user
    assert "A. Alien (1979)" in user and "B. Babe (1995)" in user and "C." not in user
    with pytest.raises(ValueError, match="1 to 20 candidates"):
        rank_conversation(history, [f"c{n}" for n in range(21)])


def test_display_title_shortens_and_keeps_the_year():
    item = Item("1", "A Very Long Title That Goes On and On", year=1999)
    assert display_title(item, 12) == "A Very Long… (1999)"
    assert display_title(Item("2", "Short"), 12) == "Short"


def test_every_label_is_one_distinct_token(packaged_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(packaged_model)
    assert len(set(single_token_ids(tokenizer, LABELS))) == 20
    with pytest.raises(ValueError, match="must be one token"):
        single_token_ids(tokenizer, ["A.", "Bravo"])


class ReversedEngine:
    """Scores the last label highest: a stand-in to check the ranker's plumbing."""

    adapters: ClassVar[dict] = {}

    def label_logprobs(self, conversations, labels, adapter=None):
        return [[-float(len(labels) - n) for n in range(len(labels))] for _ in conversations]

    def close(self):
        pass


def test_rank_is_a_permutation_of_the_candidates(rng):
    requests = [RankRequest(["h"], [f"c{n}" for n in range(k)], sorted(rng.normal(size=k), reverse=True))
                for k in (1, 5, 20, 20)]
    for weight in (0.0, 0.4, 1.0):
        for req, perm in zip(requests, Ranker(ReversedEngine(), weight=weight).rank(requests)):
            assert sorted(perm) == list(range(len(req.candidates)))
    assert Ranker(ReversedEngine(), weight=1.0).rank(requests[2:3])[0] == list(range(19, -1, -1))


def test_the_ranker_asks_for_its_own_adapter_and_none_means_base():
    asked = []

    class Recording(ReversedEngine):
        def label_logprobs(self, conversations, labels, adapter=None):
            asked.append(adapter)
            return super().label_logprobs(conversations, labels, adapter)

    requests = [RankRequest(["h"], ["a", "b"], [1.0, 0.0])]
    Ranker(Recording(), adapter=None).llm_scores(requests)
    Ranker(Recording(), adapter="rank-x").llm_scores(requests)
    assert asked == [None, "rank-x"]


def test_transformers_engine_scores_every_candidate(tiny_model):
    engine = TransformersEngine(tiny_model, dtype="float32", batch_size=2)
    requests = [RankRequest([f"Seen {n}" for n in range(8)], [f"Movie {n} (1990)" for n in range(k)], [0.0] * k)
                for k in (20, 20, 7)]
    scores = Ranker(engine).llm_scores(requests)
    for req, s in zip(requests, scores):
        assert s.shape == (len(req.candidates),) and np.isfinite(s).all()
        assert np.isclose(np.exp(s).sum(), 1.0)


def test_batching_and_padding_do_not_change_scores(tiny_model):
    engine = TransformersEngine(tiny_model, dtype="float32", batch_size=3)
    convs = [rank_conversation(["x"] * n, ["a", "b", "c"]) for n in (1, 4, 8)]
    together = np.array(engine.label_logprobs(convs, LABELS[:3]))
    alone = np.array([engine.label_logprobs([c], LABELS[:3])[0] for c in convs])
    assert np.allclose(together, alone, atol=1e-4)


def test_unknown_adapter_is_refused(tiny_model):
    engine = TransformersEngine(tiny_model, dtype="float32")
    with pytest.raises(UnknownAdapterError, match="unknown adapter 'other'"):
        engine.label_logprobs([rank_conversation(["x"], ["a"])], LABELS[:1], adapter="other")
