"""The text checks of agent/pipeline/text_quality.py (used by the service and by `muse bench agent`),
each on hand-worked cases, and the table the benchmark builds from them."""

from __future__ import annotations

import pytest

from agent.bench.agent import QUALITY_KEYS, text_quality, text_support
from agent.catalog import Item
from agent.pipeline.generation import Evidence, draft_start, explanation_start, model_part
from agent.pipeline.grounding import GroundingCheck
from agent.pipeline.support import Support, support
from agent.pipeline.text_facts import shown_facts
from agent.pipeline.text_quality import (
    addresses_reader,
    cited_titles,
    claims_watched_pick,
    cut_repeat,
    invented_titles,
    is_cut_off,
    mentions_attribute,
    names_history,
    names_title,
    near_repeats,
    repeats_citation,
    sentences,
    unique_sentence_ratio,
)

CATALOG = GroundingCheck(["Heat", "Matrix, The", "Toy Story", "Casino", "Gladiator", "Ronin"])
RONIN = Item("r", "Ronin", "Tags: heist, car chase, mercenaries.", ("Action", "Crime", "Thriller"), 1998)


@pytest.mark.parametrize(
    ("text", "allowed", "invented"),
    [
        ('You watched "Heat", so try "Ronin" (1998).', ["Ronin", "Heat"], []),
        ('You watched "Heat", so try "Ronin" and "Gladiator".', ["Ronin", "Heat"], ["Gladiator"]),  # catalog title
        ('Like "Space Llamas 3", it thrills.', ["Ronin"], ["Space Llamas 3"]),  # quoted, in no catalog
        ("The movie is called The Last Dance.", ["Ronin"], ["The Last Dance"]),  # unquoted, after "called"
        ("A sequel titled Ronin Returns is coming.", ["Ronin"], ["Ronin Returns"]),
        ("It is about The Matrix of crime.", ["Ronin"], ["The Matrix"]),  # "Matrix, The" in natural order
        ("The heat is on in this one.", ["Ronin"], []),  # one-word titles under six letters match no word
    ],
)
def test_invented_titles(text, allowed, invented):
    assert invented_titles(text, allowed, CATALOG) == invented


@pytest.mark.parametrize(
    ("text", "claims"),
    [
        ('You watched "Heat" and "Casino", so try "Ronin" (1998), another crime film: a heist.', False),
        ('You watched "Ronin" and loved it.', True),
        ("You have already seen it, so watch again.", True),
        ("You've seen this one before.", True),
        ("If you have not seen it yet, start tonight.", False),
        ('You loved "Heat"; "Ronin" has the same grit.', False),
        ('Since you watched "Heat" and "Ronin", more of the same.', True),
        ('This person watched "Ronin" twice.', True),  # the reader, in the third person
        ('"Ronin" is a thriller that you watched last week.', True),
    ],
)
def test_claims_watched_pick(text, claims):
    assert claims_watched_pick(text, "Ronin") is claims


def test_citations_and_naming():
    text = 'You watched "Heat" and "Casino", and "Heat" again.'
    assert cited_titles(text, ["Heat", "Casino", "Toy Story"]) == ["Heat", "Heat", "Casino"]
    assert repeats_citation(text, ["Heat", "Casino"]) is True
    assert repeats_citation('You watched "Heat" and "Casino".', ["Heat", "Casino"]) is False
    assert cited_titles('You watched "The Matrix".', ["Matrix, The"]) == ["Matrix, The"]
    assert names_title('"Ronin" (1998) follows a team of mercenaries.', "Ronin") is True
    assert names_title("A team of mercenaries chases a case.", "Ronin") is False
    assert names_title("The ronins of old.", "Ronin") is False  # word-bounded


@pytest.mark.parametrize(
    ("text", "cut"),
    [
        ("It is a heist film.", False),
        ('He said "go!"', False),
        ("A chase (through Paris).", False),
        ("It is a heist film with a car ch", True),
        ("And then...", True),
        ("And then…", True),
        ("", True),
        ("Is it good?", False),
    ],
)
def test_is_cut_off(text, cut):
    assert is_cut_off(text) is cut


def test_addresses_reader():
    assert addresses_reader("You watched Heat.") and addresses_reader("Made for your evening.")
    assert not addresses_reader("This person watched Heat.") and not addresses_reader("Young love.")


@pytest.mark.parametrize(
    ("text", "mentions"),
    [
        ('"Ronin" (1998) is a crime film.', True),  # a category
        ('"Ronin" (1998) is great.', True),  # its year
        ('"Ronin" is a must with its car chase.', True),  # two words of its description
        ('"Ronin" is a must.', False),  # the title alone says nothing
        ('"Ronin" is worth it, like "Heat" and the crime of it all.', True),
        ('"Ronin" is worth a look, as "Thriller Night" was.', False),  # words inside a named title do not count
    ],
)
def test_mentions_attribute(text, mentions):
    assert mentions_attribute(text, RONIN, ["Thriller Night"]) is mentions


@pytest.mark.parametrize(
    ("text", "repeats"),
    [
        ('"Ronin" (1998) is an action thriller about a chase. It is about a chase.', True),
        ("A superhero: a superhero: a superhero.", True),
        ("The story of a woman's life is the story of a woman's life.", True),
        ('"Ronin" (1998) is an action thriller about a chase. Watch it tonight.', False),
        ("It is fun. It is loud.", False),
    ],
)
def test_near_repeats(text, repeats):
    assert near_repeats(text) is repeats


def test_unique_sentence_ratio():
    assert sentences("One. Two!  Two! ") == ["one", "two", "two"]
    assert unique_sentence_ratio(["A heist. A chase.", "A heist."]) == pytest.approx(2 / 3)
    assert unique_sentence_ratio([]) == 1.0


def test_the_benchmark_table_counts_each_check():
    heat = Item("h", "Heat", "", ("Crime",), 1995)
    items = {"r": RONIN, "h": heat}
    good = {
        "id": "r",
        "explanation": 'You watched "Heat", so try "Ronin" (1998), another crime film: a heist.',
        "draft": '"Ronin" (1998) follows mercenaries on a car chase.',
    }
    bad = {
        "id": "r",
        "explanation": 'This person watched "Ronin" and loved it, like "Gladiator" and "Heat", "Heat"',
        "draft": "A team of mercenaries, as in heat.",
        "text_sources": {"explanation": "llm", "draft": "fallback"},
    }
    table = text_quality([([good], ["Heat"]), ([bad], ["Heat"])], items, CATALOG)
    examples = table.pop("examples")
    # only the model-written text is measured for support; it cites no item, so no title is a fact
    assert table.pop("support") == {
        "model_texts": 1,
        "content_words": 8,
        "unsupported_word_rate": 0.875,
        "texts_with_unsupported_share": 1.0,
        "examples": [
            {
                "kind": "explanation",
                "text": bad["explanation"],
                "unsupported": ["person", "watched", "loved", "like", "gladiator", "heat", "heat"],
            }
        ],
    }
    assert examples["drafts_naming_history"] == [{"text": bad["draft"], "source": "fallback"}]
    assert examples["invented_titles"] == [{"text": bad["explanation"], "source": "llm"}]
    assert set(examples) == {k for k, v in table.items() if k in QUALITY_KEYS and v}  # only the failed checks
    assert table == {
        "texts": 4,
        "invented_titles": 1,
        "claims_watched_pick": 1,
        "explanations_citing_no_history": 0,
        "drafts_not_naming_pick": 1,
        "cut_off": 1,
        "repeated_citations": 1,
        "explanations_not_addressing_reader": 1,
        "drafts_naming_history": 1,
        "unique_sentence_ratio": 1.0,
        "share_mentioning_an_attribute": 0.5,
    }


def test_a_title_inside_a_longer_title_is_not_named_twice():
    check = GroundingCheck(["Hunger Games, The", "Hunger", "Spider-Man", "Spider-Man 2"])
    assert check.foreign_titles('You watched "The Hunger Games".', ["Hunger Games, The"]) == []
    assert claims_watched_pick('You watched "Spider-Man 2" and "Heat", so try "Spider-Man".', "Spider-Man") is False
    assert claims_watched_pick('You watched "Spider-Man" and "Heat".', "Spider-Man") is True


def test_titles_with_punctuation_and_titles_inside_titles():
    check = GroundingCheck(
        [
            "O Brother, Where Art Thou?",
            "Brother",
            "Star Wars: Episode V - The Empire Strikes Back",
            "Empire",
            "Road Warrior, The (Mad Max 2)",
            "Warrior",
            "Batman",
            "Batman Forever",
        ]
    )
    for text, allowed in [
        ('You watched "O Brother, Where Art Thou?" twice.', ["O Brother, Where Art Thou?"]),
        (
            'You watched "Star Wars: Episode V - The Empire Strikes Back".',
            ["Star Wars: Episode V - The Empire Strikes Back"],
        ),
        ('You watched "Road Warrior, The (Mad Max 2)".', ["Road Warrior, The (Mad Max 2)"]),
    ]:
        assert check.foreign_titles(text, allowed) == [], text
    assert check.foreign_titles("A Brother of the road.", []) == ["Brother"]
    # a one-word title inside a name is no title: "also written by Michael Crichton" (ml-latest-small
    # has a film "Michael"); alone, it still is
    people = GroundingCheck(["Michael", "Martin"])
    assert people.foreign_titles("also written by Michael Crichton, also with Steve Martin.", []) == []
    assert people.foreign_titles("a sequel to Michael, with more angels.", []) == ["Michael"]
    assert cited_titles('You watched "Batman" and "True Lies", so try "Batman Forever".', ["Batman"]) == ["Batman"]
    assert (
        repeats_citation('You watched "Batman" and "Heat", so try "Batman Forever" (1995).', ["Batman", "Heat"])
        is False
    )


def test_names_history_leaves_out_what_the_pick_itself_says():
    film = Item("xf", "X-Files: Fight the Future, The", "Tags: aliens, conspiracy", ("Sci-Fi",), 1998)
    history = ["X-Files, The", "Aliens", "Heat"]
    assert names_history("A conspiracy of aliens, as in the X-Files.", film, history) == []  # its own title and tags
    assert names_history("Mulder chases aliens like in Heat.", film, history) == ["Heat"]
    assert names_history('A pitch in the spirit of "Heat" and heat.', film, history) == ["Heat", "Heat"]


def test_support_counts_words_no_fact_backs():
    facts = ["Night Train Heist", "1998", "Crime", "Robbers hold up a night train bound for the coast."]
    # invented: the sleeper and the moon are in no fact; "takes" is glue, "a", "to", "the" function words
    s = support("takes a sleeper to the moon.", facts)
    assert s.words == ("sleeper", "moon") and s.unsupported == ("sleeper", "moon") and s.rate == 1.0
    # the same events in other forms: "robbery" and "robbers" share the stem "robber"
    s = support("a night-train robbery bound for the coast.", facts)
    assert s.words == ("night", "train", "robbery", "bound", "coast") and s.unsupported == ()
    # a listed synonym supports a word ("criminals" -> "crime"); a number only when a fact holds it
    s = support("criminals strike in 1998, not 1999.", facts)
    assert s.unsupported == ("strike", "1999") and s.rate == 2 / 4
    # a category's common word: "funny" is supported by Comedy, "scary" is not
    comedy = ["Comedy", "A retired bowler coaches a hopeless league team."]
    assert support("a funny, scary coaching job.", comedy).unsupported == ("scary", "job")
    assert support("", facts) == Support((), ()) and support("", facts).rate == 0.0


def test_a_repeated_clause_is_cut_and_what_came_first_stays():
    assert cut_repeat(" with a shy DJ, a shy DJ, a shy DJ.") == " with a shy DJ."
    said = " about a marine biologist and a fisherman, on an island at low tide, a marine biologist and the seals."
    assert cut_repeat(said) == " about a marine biologist and a fisherman, on an island at low tide."
    assert cut_repeat(" about a chase!") == " about a chase!"  # nothing repeats
    assert cut_repeat(" lazy lazy lazy.") == " lazy lazy lazy."  # no clause before the repeat: left to the checks
    assert cut_repeat(" a shy DJ; a shy DJ!") == " a shy DJ!"  # its own end mark
    assert cut_repeat(" the courthouse, the courthouse.") == " the courthouse."  # a clause of words said before
    assert cut_repeat(" goats, workplace, silly.") == " goats, workplace, silly."  # a list says each once
    assert cut_repeat("") == "" and cut_repeat("  ") == "  "  # nothing written (an incomplete result)


def test_model_part_and_shown_facts_follow_the_prompt():
    pick = Item("p", "Lucky Strike, The", "A retired bowler coaches a hopeless league team.", ("Comedy",), 1999)
    seen = Item("h", "Kingpin", "", ("Comedy", "Sports"), 1996)
    ev = Evidence(pick, [seen])
    start = explanation_start(ev)
    assert model_part(start + " a bowler and a team.", ev, "explanation") == " a bowler and a team."
    liked = Evidence(pick, [seen], said={"h": "liked"})  # written for "you said you liked": cut at the colon
    assert model_part(explanation_start(liked) + " a team.", ev, "explanation") == " a team."
    assert model_part(draft_start(ev) + " about bowling.", ev, "draft") == " about bowling."
    assert model_part("A template.", ev, "draft") == "A template."
    assert shown_facts(ev, "draft") == ["The Lucky Strike", "1999", "Comedy", pick.text]
    assert shown_facts(ev, "explanation")[-3:] == ["Kingpin", "Comedy", "Sports"]


def test_bench_support_table_reads_only_model_texts():
    pick = Item("p", "Lucky Strike, The", "A retired bowler coaches a hopeless league team.", ("Comedy",), 1999)
    seen = Item("h", "Kingpin", "", ("Comedy", "Sports"), 1996)
    ev = Evidence(pick, [seen])
    shown = {
        "id": "p",
        "cited": [{"id": "h"}],
        "explanation": explanation_start(ev) + " a coach and his league.",  # coach, league: supported
        # night, stand, favorite, alley: none supported
        "draft": draft_start(ev) + " about a one-night stand at his favorite alley.",
        "text_sources": {"explanation": "llm", "draft": "llm"},
    }
    template = dict(shown, draft="Anything at all.", text_sources={"explanation": "template", "draft": "template"})
    table = text_support([([shown, template], ["Kingpin"])], {"p": pick, "h": seen})
    assert table["model_texts"] == 2 and table["content_words"] == 2 + 4
    assert table["unsupported_word_rate"] == round(4 / 6, 4) and table["texts_with_unsupported_share"] == 0.5
    assert table["examples"] == [
        {"kind": "draft", "text": shown["draft"], "unsupported": ["night", "stand", "favorite", "alley"]}
    ]
