"""What the model is told about a pick (agent/pipeline/text_facts.py), on hand-worked items."""

from __future__ import annotations

from agent.catalog import Item
from agent.pipeline.evidence import Evidence
from agent.pipeline.generation import TextPlan, text_job
from agent.pipeline.grounding import GroundingCheck
from agent.pipeline.text_facts import details, excerpt, fact_spans, has_facts, prompt_facts, shown_facts

HEAT = Item(
    "heat",
    "Heat",
    "",
    ("Action", "Crime"),
    1995,
    metadata={"director": ["Michael Mann"], "cast": ["Al Pacino", "Robert De Niro", "Val Kilmer", "Jon Voight"]},
)
DEMO = Item(
    "d",
    "Cold Harbor",
    "A dockworker finds a body.",
    ("Thriller",),
    2001,
    metadata={"runtime_min": 95, "tone": "tense", "kind": "film"},
)
BARE = Item("b", "Casino", "", ("Crime", "Drama"), 1995)


def test_details_read_the_list_fields_in_name_order():
    assert details(HEAT) == "cast Al Pacino, Robert De Niro, Val Kilmer; director Michael Mann"  # the first three
    assert details(DEMO) == ""  # text and number fields are not shown
    assert details(BARE) == ""
    assert details(Item("x", "X", metadata={"cast": [], "spoken_language": ["French"]})) == "spoken language French"


def test_credits_are_facts_to_write_from_and_their_words_may_be_written():
    assert has_facts(HEAT) and has_facts(DEMO) and not has_facts(BARE)  # DEMO: by its description
    assert (
        "Details: cast Al Pacino, Robert De Niro, Val Kilmer; director Michael Mann."
        in text_job(Evidence(HEAT, []), "draft").messages[-1]["content"]
    )
    assert prompt_facts(HEAT)["details"] in shown_facts(Evidence(HEAT, []), "draft")
    spans = fact_spans(Evidence(HEAT, []), "draft")
    assert spans == ("Al Pacino, Robert De Niro, Val Kilmer", "Michael Mann")  # no 4th name; categories: Muse's
    tagged = Item("t", "Heat", "Tags: heist, Los Angeles", ("Crime",), 1995)
    assert fact_spans(Evidence(tagged, [BARE]), "explanation") == ("heist, Los Angeles",)
    assert excerpt("a b " * 200).endswith("a b") and len(excerpt("word " * 100)) <= 240
    # the model is asked for a pick with credits and no description; not for one with neither
    plan = TextPlan([Evidence(HEAT, [BARE]), Evidence(BARE, [HEAT])], GroundingCheck(["Heat", "Casino"]))
    assert plan.keys == [(0, "explanation"), (0, "draft")]


def test_an_explanation_says_what_the_pick_shares_with_the_reader_films():
    """Issue 24 item 4: beyond "another crime film": a shared tone, the people both have, and the
    description words both use (given to the model); two readers, two prompts for one pick."""
    from agent.pipeline.generation import explanation_start
    from agent.pipeline.text_facts import shared_details, shared_words

    pick = Item(
        "p",
        "Night Train Heist",
        "Robbers hold up a night train bound for the coast.",
        ("Crime", "Thriller"),
        1998,
        metadata={"tone": "tense", "cast": ["Al Pacino", "Ann Roth"], "director": ["Jo Lee"]},
    )
    robbery = Item(
        "r",
        "Bank Job",
        "Three robbers plan one last bank job.",
        ("Crime",),
        1995,
        metadata={"tone": "tense", "cast": ["Al Pacino"], "director": ["Sam Kay"]},
    )
    comedy = Item(
        "c", "Coast Guard Capers", "Two clumsy sailors guard the coast.", ("Comedy",), 2001, metadata={"tone": "light"}
    )
    ev = Evidence(pick, [robbery])
    assert shared_details(ev) == [("cast", "Al Pacino"), ("tone", "tense")]
    assert shared_words(ev) == ["robbers"]
    assert explanation_start(ev) == (
        'You watched "Bank Job", so try "Night Train Heist" (1998), another tense crime film, also with Al Pacino:'
    )
    other = Evidence(pick, [comedy])
    assert shared_details(other) == [] and shared_words(other) == ["coast"]
    assert explanation_start(other) == 'You watched "Coast Guard Capers", so try "Night Train Heist" (1998):'
    drafts = [text_job(e, "draft").messages[-1]["content"] for e in (ev, other)]
    assert "shares with this reader's films: robbers." in drafts[0] and "films: coast." in drafts[1]
    assert shared_words(Evidence(pick, [])) == [] and shared_details(Evidence(pick, [])) == []


def test_a_draft_opens_a_clause_with_where_and_a_list_with_with():
    from agent.pipeline.text_facts import leads

    tagged = Item("t", "Heat", "Tags: heist, Los Angeles", ("Crime",), 1995)
    assert text_job(Evidence(DEMO, []), "draft").leads == (" where",)  # a prose description
    assert leads(Evidence(tagged, []), "draft") == (" with",) == leads(Evidence(HEAT, []), "draft")  # tags; credits
    assert leads(Evidence(DEMO, [BARE]), "explanation") == ("",)  # after the start's colon
