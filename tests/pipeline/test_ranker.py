"""The ranker: prompt, label scores for every candidate, fusion and the permutation property."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from agent.catalog import Item
from agent.llm.engine import UnknownAdapterError, single_token_ids
from agent.llm.transformers_engine import TransformersEngine
from agent.pipeline.ranker import (
    LABELS,
    PromptConfig,
    Ranker,
    RankRequest,
    candidate_facts,
    display_title,
    fuse,
    label_distribution,
    order,
    rank_conversation,
    shared_facts,
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


def test_a_candidates_facts_carry_its_credits_by_their_first_names():
    item = Item(
        "7",
        "Toy Story",
        text="Tags: pixar, fun, friendship, toys, cowboy, space, ranger, rivalry, moving, day, kids, sid, more.",
        categories=("Animation", "Comedy"),
        year=1995,
        metadata={"director": ["John Lasseter"], "cast": ["Tom Hanks", "Tim Allen", "Don Rickles"], "tone": "warm"},
    )
    assert candidate_facts(item, 40) == (
        "Toy Story (1995) · Animation/Comedy · cast Tom Hanks, Tim Allen · director John Lasseter · tone warm"
        " · Tags: pixar, fun, friendship, toys, cowboy, space, ranger, rivalry, moving, day, kids,"
    )
    assert candidate_facts(Item("8", "Plain"), 40) == "Plain"


def test_what_a_candidate_shares_with_the_liked_films_is_counted_for_the_model():
    liked = [
        Item("a", "A", categories=("Crime", "Drama"), metadata={"cast": ["Tom Hanks"], "tone": "dark"}),
        Item("b", "B", categories=("Crime", "Comedy"), metadata={"director": ["Ann Lee"], "tone": "light"}),
    ]
    pick = Item(
        "c",
        "C",
        categories=("Drama", "Crime", "War"),
        metadata={"cast": ["Meg Ryan", "Tom Hanks"], "director": ["Bo Wu"], "tone": "dark", "runtime_min": 95},
    )
    assert shared_facts(pick, liked) == "Crime/Drama; cast Tom Hanks; tone dark"  # Crime twice, Drama once
    assert shared_facts(Item("d", "D", categories=("Western",)), liked) == "nothing"
    assert shared_facts(pick, []) == ""
    line = RankRequest.for_chat("more please", [pick], [1.0], liked).candidates[0]
    assert line.endswith(" · in common: Crime/Drama; cast Tom Hanks; tone dark")


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

    def label_logprobs(self, conversations, labels, adapter=None, timeout=None):
        return [[-float(len(labels) - n) for n in range(len(labels))] for _ in conversations]

    def close(self):
        pass


def test_rank_is_a_permutation_of_the_candidates(rng):
    requests = [
        RankRequest(["h"], [f"c{n}" for n in range(k)], sorted(rng.normal(size=k), reverse=True))
        for k in (1, 5, 20, 20)
    ]
    for weight in (0.0, 0.4, 1.0):
        for req, perm in zip(requests, Ranker(ReversedEngine(), weight=weight).rank(requests)):
            assert sorted(perm) == list(range(len(req.candidates)))
    assert Ranker(ReversedEngine(), weight=1.0).rank(requests[2:3])[0] == list(range(19, -1, -1))


def test_the_ranker_asks_for_its_own_adapter_and_none_means_base():
    asked = []

    class Recording(ReversedEngine):
        def label_logprobs(self, conversations, labels, adapter=None, timeout=None):
            asked.append(adapter)
            return super().label_logprobs(conversations, labels, adapter)

    requests = [RankRequest(["h"], ["a", "b"], [1.0, 0.0])]
    Ranker(Recording(), adapter=None).llm_scores(requests)
    Ranker(Recording(), adapter="rank-x").llm_scores(requests)
    assert asked == [None, "rank-x"]


def test_transformers_engine_scores_every_candidate(tiny_model):
    engine = TransformersEngine(tiny_model, dtype="float32", batch_size=2)
    requests = [
        RankRequest([f"Seen {n}" for n in range(8)], [f"Movie {n} (1990)" for n in range(k)], [0.0] * k)
        for k in (20, 20, 7)
    ]
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


def test_a_merged_adapter_scores_as_the_adapter_does(tiny_model, tiny_registry, tmp_path):
    """MUSE_RANK_ENGINE=merged: the adapter folded into the base weights gives the label scores
    of the base model with the adapter applied (and not those of the base model alone)."""
    from agent.llm.merged import merged_checkpoint

    adapter = tiny_registry / "rank-test"
    folder = merged_checkpoint(tiny_model, adapter, tmp_path)
    assert merged_checkpoint(tiny_model, adapter, tmp_path) == folder  # written once, then reused
    convs = [rank_conversation(["A (1990)", "B (1991)"], [f"C{n} (2000)" for n in range(20)])]
    with_adapter = np.array(
        TransformersEngine(tiny_model, {"rank-test": adapter}, dtype="float32").label_logprobs(
            convs, LABELS, "rank-test"
        )
    )
    merged = np.array(TransformersEngine(folder, dtype="float32").label_logprobs(convs, LABELS))
    base = np.array(TransformersEngine(tiny_model, dtype="float32").label_logprobs(convs, LABELS))
    assert np.allclose(merged, with_adapter, atol=1e-4), np.abs(merged - with_adapter).max()
    assert np.abs(base - with_adapter).max() > 1e-3  # the adapter changes the scores


def _users(targets: list[str]):
    from agent.evaluation.retrieval_eval import UserCandidates
    from retrieval.retriever import Candidate

    return [
        UserCandidates(f"u{n}", [], t, [Candidate("a", 1.0, "hybrid"), Candidate("b", 0.0, "hybrid")])
        for n, t in enumerate(targets)
    ]


def test_the_fusion_weight_is_kept_only_when_validation_says_it_helps(tmp_path):
    """Two candidates, retrieval puts a first, the LLM b (any weight above 0.5 flips them); the
    held-out item is b for some users and a for the rest. N@10 at rank 1 is 1, at rank 2
    1/log2(3) = 0.631, so flipping gains +0.369 where b is right and loses as much elsewhere."""
    import json

    from agent.evaluation.rerank_eval import record_weight, validated_weight
    from agent.llm.registry import fusion_weight_of

    llm = {n: np.log(np.array([0.1, 0.9])) for n in range(20)}
    weight, evidence = validated_weight(_users(["b"] * 20), llm)
    assert weight == 0.55 and evidence["gain_mean"] == pytest.approx(1 - 1 / np.log2(3), abs=1e-5)
    # 11 helped, 9 hurt: the mean gain 0.0369 is under 1.645 standard errors (0.0847 each)
    weight, evidence = validated_weight(_users(["b"] * 11 + ["a"] * 9), llm)
    assert (
        weight == 0.0 and evidence["best_weight"] == 0.55 and evidence["gain_mean"] == pytest.approx(0.0369, abs=1e-4)
    )
    weight, evidence = validated_weight(_users(["a"] * 20), llm)  # the LLM only hurts: retrieval order
    assert weight == 0.0 and evidence["best_weight"] == 0.0

    adapter = tmp_path / "rank-x"
    adapter.mkdir()
    (adapter / "manifest.json").write_text(json.dumps({"kind": "ranker"}))
    assert fusion_weight_of(adapter) == 0.0  # never validated: not used
    record_weight(adapter, 0.55, {"best_weight": 0.55})
    assert (
        fusion_weight_of(adapter) == 0.55 and json.loads((adapter / "manifest.json").read_text())["kind"] == "ranker"
    )


def test_the_weight_search_takes_the_best_metric_and_breaks_ties_toward_retrieval_order():
    """Hand-worked (ranker.best_weight): the highest metric wins; equal metrics go to the
    smaller weight; a tuple metric compares its parts in order."""
    from agent.pipeline.ranker import WEIGHT_GRID, best_weight

    assert WEIGHT_GRID[0] == 0.0 and WEIGHT_GRID[-1] == 1.0 and len(WEIGHT_GRID) == 21
    assert best_weight(lambda w: -abs(w - 0.3)) == 0.3
    assert best_weight(lambda w: 1.0 if w >= 0.5 else 0.0) == 0.5  # a plateau: its smallest weight
    assert best_weight(lambda w: 0.0) == 0.0  # nothing helps: retrieval order
    by_weight = {0.0: (0.1, 0.5), 0.5: (0.2, 0.1), 1.0: (0.2, 0.3)}
    assert best_weight(by_weight.__getitem__, by_weight) == 1.0  # R@10 tied, N@10 decides
