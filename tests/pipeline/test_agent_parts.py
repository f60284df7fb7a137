"""The agent's pure parts on hand-worked cases: intent rules, multi-turn
references, the grounding check, MMR diversity (texts: tests/pipeline/test_generation.py)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.catalog import Item
from agent.pipeline.chat import build_ask, read_turns
from agent.pipeline.diversity import mmr
from agent.pipeline.grounding import GroundingCheck, natural_title, normalize
from agent.pipeline.intent import rule_intent
from agent.pipeline.reader import ConversationReader, Vocabulary

CATEGORIES = ["Comedy", "Drama", "Horror", "Sci-Fi"]


@pytest.mark.parametrize(
    ("text", "years", "categories"),
    [
        ("something light from the 90s, nothing I've seen", (1990, 1999), ["Comedy"]),
        ("a scary film from the 1980s", (1980, 1989), ["Horror"]),
        ("sci-fi between 2001 and 1995", (1995, 2001), ["Sci-Fi"]),
        ("drama after 2010", (2011, None), ["Drama"]),
        ("anything before 1960", (None, 1959), []),
        ("films from 1977", (1977, 1977), []),
        ("a western", (None, None), []),  # not a catalog category here: no filter
    ],
)
def test_rule_intent(text, years, categories):
    intent = rule_intent(text, CATEGORIES)
    assert (intent.year_min, intent.year_max) == years
    assert intent.categories == categories and intent.query == text and intent.source == "rules"


def test_turns_resolve_references_and_carry_filters():
    first = "Here are 3 picks for you:\n1. A (1994) [#a]\n2. B (1995) [#b]\n3. C (1996) [#c]\n"
    messages = [
        {"role": "user", "content": "something light from the 90s"},
        {"role": "assistant", "content": first},
        {"role": "user", "content": "more like the second one, not the third one, but darker"},
    ]
    turns = read_turns(messages)
    assert turns.like_ids == ["b"] and turns.exclude_ids == ["c"]
    assert turns.text == "but darker"
    items = [Item(i, i.upper(), categories=("Comedy",), year=1994) for i in "abc"]
    reader = ConversationReader(Vocabulary(items), lambda ids: [it for it in items if it.id in ids])
    ask, intent, state = build_ask(turns, "u1", 5, reader)
    assert ask.like_ids == ["b"] and set(ask.filters.exclude_ids) == {"a", "b", "c"}
    assert (ask.filters.year_min, ask.filters.year_max) == (1990, 1999)  # carried from turn 1
    # "light" falls back to Comedy (no tone field here); "darker" then drops the light categories
    assert ask.filters.categories == [] and ask.constraints.excluded_categories == ["Comedy"]
    assert state.comparisons == ["darker than the last picks"] and intent.year_min == 1990
    with pytest.raises(ValueError, match="no user message"):
        read_turns([{"role": "system", "content": "hi"}])


def test_grounding_check():
    check = GroundingCheck(["Matrix, The", "Heat", "Toy Story", "Up", "Gladiator"])
    assert natural_title("Matrix, The") == "The Matrix" and normalize("Toy Story (1995)") == "toy story"
    allowed, history = ["Toy Story", "Matrix, The"], ["Matrix, The"]
    assert check.check('You loved "The Matrix", so try "Toy Story".', allowed, history).ok
    assert check.check("The heat is on: you loved The Matrix.", allowed, history).ok  # "heat" is a word
    v = check.check("Like The Matrix and Gladiator, Toy Story ...", allowed, history)
    assert not v.ok and v.reason == "unknown_title: Gladiator"  # a catalog title the user never saw
    v = check.check('Like "The Matrix" and "Space Llamas 3".', allowed, history)
    assert not v.ok and v.reason == "unknown_title: Space Llamas 3"  # an invented, quoted title
    assert check.check('"Toy Story" is fun.', allowed, history).reason == "not_cited"


def test_mmr_trades_relevance_for_variety():
    vectors = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0]])  # 0 and 1 nearly the same item
    relevance = [3.0, 2.9, 1.0]
    assert mmr(relevance, vectors, 2, 0.0) == [0, 1]
    assert mmr(relevance, vectors, 2, 0.7) == [0, 2]
    with pytest.raises(ValueError, match="diversity"):
        mmr(relevance, vectors, 2, 1.5)


def test_an_item_seeded_outside_the_history_is_never_cited_as_watched(demo_data, tmp_path):
    """``Ask.like_ids`` without a word in ``Ask.said`` (a caller that only points at an item):
    the explanation says "you asked for more like" it, never "you watched" it."""
    import shutil

    from agent.catalog import cited_as
    from agent.config import Settings
    from agent.indexing import load_retriever
    from agent.observability import Metrics
    from agent.pipeline.generation import explanation_start
    from agent.pipeline.recommender import Ask, MuseAgent
    from agent.store import open_store

    shutil.copytree(demo_data, tmp_path / "data")
    settings = Settings(data_dir=tmp_path / "data")
    store = open_store(settings.store_url)
    agent = MuseAgent(settings, store, load_retriever(settings), None, Metrics())
    try:
        user = "demo-user-01"
        history = {e.item_id for e in store.history(user)}
        seed = next(it for it in store.items() if it.id not in history)
        plan = agent.plan(Ask(user, 5, like_ids=[seed.id]))
        cited = [(ev, h) for ev in plan.texts.evidence for h in ev.history]
        assert any(h.id == seed.id for _, h in cited)  # the seed is cited somewhere
        for ev, h in cited:
            start = explanation_start(ev)
            if h.id in history:  # cited by what the user did with it (catalog.CITED_AS)
                assert ev.said[h.id] == cited_as(store.history(user))[h.id]
            else:
                assert ev.said[h.id] == "asked" and f'watched "{natural_title(h.title)}"' not in start, start
    finally:
        agent.close()
        store.close()


def test_a_deeper_ask_retrieves_more_candidates_and_serving_keeps_twenty(demo_data, tmp_path):
    """``Ask.depth`` (a trainer's deeper look for labels): more candidates, the served 20 first."""
    import shutil

    from agent.config import Settings
    from agent.indexing import load_retriever
    from agent.observability import Metrics
    from agent.pipeline.ranker import CANDIDATES
    from agent.pipeline.recommender import Ask, MuseAgent
    from agent.store import open_store

    shutil.copytree(demo_data, tmp_path / "data")
    settings = Settings(data_dir=tmp_path / "data")
    store = open_store(settings.store_url)
    agent = MuseAgent(settings, store, load_retriever(settings), None, Metrics())
    try:
        served = agent.plan(Ask("demo-user-01", 5))
        deeper = agent.plan(Ask("demo-user-01", 50, depth=50))
        assert len(served.candidate_ids) == CANDIDATES and len(deeper.candidate_ids) == 50
        assert deeper.candidate_ids[:CANDIDATES] == served.candidate_ids and len(deeper.items) == 50
    finally:
        agent.close()
        store.close()
