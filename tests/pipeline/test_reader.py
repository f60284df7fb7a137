"""The conversation reader on hand-worked requests over the shipped demo catalog (the requests
that issue 23 found misread), and the title linker's tolerance."""

from __future__ import annotations

import pytest

from agent.catalog import Item, load_file
from agent.pipeline.reader import ConversationReader, TitleLinker, Vocabulary, normalize_title
from tests.conftest import DEMO


@pytest.fixture(scope="module")
def reader() -> ConversationReader:
    items = load_file(DEMO / "demo_items.jsonl").items
    by_id = {it.id: it for it in items}
    return ConversationReader(Vocabulary(items), lambda ids: [by_id[i] for i in ids if i in by_id])


def read(reader, *turns, shown=()):
    return reader.read(list(turns), [list(s) for s in shown])


def test_negation_excludes_instead_of_asking(reader):
    s = read(reader, "something for my kids, nothing violent or scary")
    assert s.constraints.categories == ["Family"]
    assert {"Horror", "Action", "Crime", "War"} <= set(s.constraints.excluded_categories)
    s = read(reader, "a thriller, but no horror please")
    assert s.constraints.categories == ["Thriller"] and s.constraints.excluded_categories == ["Horror"]
    assert read(reader, "not a musical").constraints.excluded_categories == ["Musical"]


def test_named_films_with_sentiment(reader):
    s = read(reader, "I really did not like Substitute Santa. Give me a comedy")
    assert [(m.item_id, m.sentiment) for m in s.mentions] == [("demo-005", "disliked")]
    assert s.excluded == ["demo-005"] and s.seeds == [] and s.constraints.categories == ["Comedy"]
    s = read(reader, "I loved Depth Charge Protocol and Steel Harbor. What else would I like?")
    assert [(m.item_id, m.sentiment) for m in s.mentions] == [("demo-160", "liked"), ("demo-152", "liked")]
    assert s.seeds == ["demo-160", "demo-152"] and s.query is None  # nothing left for the content space


def test_titles_tolerate_case_articles_years_and_typos():
    items = [
        Item("t1", "Thing, The (1982)", year=1982),
        Item("t2", "Shining, The", year=1980),
        Item("t3", "Shining, The", year=1997),
        Item("t4", "Kids", year=1995),
        Item("t5", "Alien", year=1979),
    ]
    linker = TitleLinker(items, popularity=["t3", "t2"])
    assert normalize_title("Thing, The (1982)") == "thing" == normalize_title("the THING")
    found = lambda text: [it.id for it, *_ in linker.find(text)]
    assert found("I loved The Shining (1980) and Alien (1979)") == ["t2", "t5"]  # the year picks the film
    assert found("I loved The Shining") == ["t3"]  # no year: the more popular one
    assert found("have you seen the thing? I mean 'The Thing'") == ["t1"]  # quoted
    assert found("something for my kids") == []  # a one-word title must be capitalized
    big = [Item("r", "Rocket to the Red Planet", year=1954)]
    assert [it.id for it, *_ in TitleLinker(big).find("like Rocket to teh Red Plant")] == ["r"]  # typos


def test_comparatives_relative_to_the_last_picks_or_a_named_film(reader):
    light = ["demo-001", "demo-002", "demo-003"]  # light 1990s comedies
    s = read(reader, "something light from the 90s", "darker, please", shown=[light])
    assert s.constraints.values["tone"] and "light" not in s.constraints.values["tone"]
    assert (s.constraints.year_min, s.constraints.year_max) == (1990, 1999)  # carried from turn 1
    s = read(reader, "something like Rocket to the Red Planet, but much newer")
    assert s.seeds == ["demo-173"] and s.constraints.year_min == 1954 + 10
    s = read(reader, "a gripping thriller, not too old")
    assert s.constraints.year_min is not None and s.constraints.year_min >= 1995


def test_metadata_fields_and_counts(reader):
    assert read(reader, "a series I can binge").constraints.values == {"kind": ["series"]}
    s = read(reader, "a short film, under 90 minutes")
    assert s.constraints.ranges["runtime_min"][1] <= 90
    assert read(reader, "I had a rough week, something uplifting").constraints.values == {"tone": ["uplifting"]}
    s = read(reader, "give me three documentaries")
    assert s.count == 3 and s.constraints.categories == ["Documentary"]


def test_what_cannot_be_read(reader):
    for text in ("hi", "Hello there!", "Thanks for the suggestions"):
        s = read(reader, text)
        assert s.unclear == "greeting" and s.query is None and not s.mentions
    ml_like = ConversationReader(Vocabulary([Item("m1", "Heat", categories=("Crime",), year=1995)]), lambda ids: [])
    s = ml_like.read(["a series under 90 minutes"])
    assert len(s.unsupported) == 2 and not s.constraints.values and not s.constraints.ranges


def test_later_turns_override_and_retract(reader):
    s = read(reader, "no horror", "ok, horror is fine actually")
    assert "Horror" not in s.constraints.excluded_categories and s.constraints.categories == ["Horror"]
    s = read(reader, "I loved Substitute Santa", "actually I hated Substitute Santa")
    assert [(m.item_id, m.sentiment) for m in s.mentions] == [("demo-005", "disliked")]
