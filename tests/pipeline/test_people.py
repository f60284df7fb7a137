"""People named in a request (agent/pipeline/people.py) read into constraints by the reader, on a
hand-made catalog whose items carry the credits `muse ingest --facts` joins."""

import pytest

from agent.catalog import Item
from agent.pipeline.people import PeopleLinker, fold
from agent.pipeline.reader import Constraints, ConversationReader, Vocabulary

ITEMS = [
    Item(
        "1",
        "The Bride Wore Black",
        "",
        ("Thriller",),
        1968,
        {"director": ["François Truffaut"], "cast": ["Jeanne Moreau"], "language": ["French"]},
    ),
    Item("2", "The 400 Blows", "", ("Drama",), 1959, {"director": ["François Truffaut"], "language": ["French"]}),
    Item("3", "Kismet", "", ("Drama",), 1944, {"director": ["William Dieterle"], "cast": ["Marlene Dietrich"]}),
    Item(
        "4",
        "Rain Man",
        "",
        ("Drama",),
        1988,
        {"director": ["Barry Levinson"], "cast": ["Dustin Hoffman", "Tom Cruise"]},
    ),
    Item("5", "Toys", "", ("Comedy",), 1992, {"director": ["Barry Levinson"], "writer": ["Barry Levinson"]}),
    Item("6", "Diner", "", ("Comedy",), 1982, {"director": ["Barry Levinson"], "cast": ["Steve Guttenberg"]}),
    Item("7", "Billy Madison", "", ("Comedy",), 1995, {"cast": ["Adam Sandler"]}),
    Item(
        "8", "Play Misty for Me", "", ("Thriller",), 1971, {"director": ["Clint Eastwood"], "cast": ["Clint Eastwood"]}
    ),
    Item(
        "9", "Escape from Alcatraz", "", ("Thriller",), 1979, {"director": ["Don Siegel"], "cast": ["Clint Eastwood"]}
    ),
    Item("10", "Levinson Street", "", ("Drama",), 2001, {"cast": ["Ann Levinson"]}),
    Item("11", "Heat", "", ("Crime",), 1995, {}),
]
BY_ID = {it.id: it for it in ITEMS}


@pytest.fixture
def reader():
    return ConversationReader(Vocabulary(ITEMS), lambda ids: [BY_ID[i] for i in ids if i in BY_ID])


def _state(reader, *turns):
    return reader.read(list(turns))


def test_names_are_folded_for_comparison():
    assert fold("François Truffaut") == "francois truffaut" == fold("francois  TRUFFAUT")
    assert fold("Dan O'Bannon") == "dan obannon"


def test_the_catalogs_list_fields_split_into_people_and_words(reader):
    v = reader.vocabulary
    assert v.people_fields == ["cast", "director", "writer"]
    assert v.text_fields["language"] == {"French"}  # one-word entries: values, "a French film"


@pytest.mark.parametrize(
    "text, person, fields",
    [
        ("I prefer Barry Levinson movies. Any other suggestions?", "Barry Levinson", ("director", "writer")),
        ("something with marlene dietrich", "Marlene Dietrich", ("cast",)),  # lower case, whole name
        ("something with Marlene Deitrich", "Marlene Dietrich", ("cast",)),  # a typo, capitalized
        ("a Truffaut film", "François Truffaut", ("director",)),  # a surname next to a cue
        ("Truffaut's movies", "François Truffaut", ("director",)),
        ("a film directed by Clint Eastwood", "Clint Eastwood", ("director",)),
        ("something starring Clint Eastwood", "Clint Eastwood", ("cast",)),
        ("a Clint Eastwood movie", "Clint Eastwood", ("director", "cast")),
        ("something with Barry Levinson", "Barry Levinson", ("director", "writer")),  # never cast: every field of his
    ],
)
def test_a_named_person_becomes_a_constraint_on_the_fields_the_words_point_at(reader, text, person, fields):
    state = _state(reader, text)
    assert {name: set(f) for name, f in state.constraints.people.items()} == {person: set(fields)}
    assert not state.unsupported and not state.mentions


def test_a_surname_alone_needs_a_cue_and_one_dominant_person(reader):
    linker = reader.vocabulary.people
    assert [p.name for p in linker.find("a Levinson film")] == ["Barry Levinson"]  # 3 films against 1
    assert linker.find("I watched Levinson yesterday") == []  # no cue
    assert linker.find("a levinson film") == []  # a surname alone must be capitalized
    assert linker.find("a French film") == []  # a language value, not a person named French


def test_negation_excludes_and_the_constraints_admit_items(reader):
    state = _state(reader, "a comedy, nothing starring Adam Sandler please")
    c = state.constraints
    assert c.categories == ["Comedy"] and c.excluded_people == {"Adam Sandler": ("cast",)} and not c.people
    assert [it.id for it in ITEMS if c.admits(it)] == ["5", "6"]
    assert "not with Adam Sandler" in c.summary()
    hated = _state(reader, "I can't stand Adam Sandler movies. A comedy?").constraints
    assert hated.excluded_people == {"Adam Sandler": ("cast",)} and not hated.people


def test_people_narrow_retrieval_to_their_items(reader):
    v = reader.vocabulary
    state = _state(reader, "a Barry Levinson comedy")
    assert v.items_for(state.constraints) == ["4", "5", "6"]  # every film of his; the category is Chroma's
    assert [it.id for it in ITEMS if state.constraints.admits(it)] == ["5", "6"]
    assert v.items_for(Constraints()) is None
    both = Constraints(people={"Clint Eastwood": ("cast",), "Don Siegel": ("director",)})
    assert v.items_for(both) == ["9"]  # every person named, together


def test_a_later_turn_replaces_the_people_and_a_language_is_a_value(reader):
    state = _state(reader, "a Truffaut film", "no, I prefer Barry Levinson movies")
    assert list(state.constraints.people) == ["Barry Levinson"]
    state = _state(reader, "a French film from the 60s")
    assert state.constraints.values == {"language": ["French"]} and not state.constraints.people
    assert [it.id for it in ITEMS if state.constraints.admits(it)] == ["1"]  # French and of the 60s


def test_a_person_the_catalog_does_not_credit_is_said(reader):
    state = _state(reader, "something starring Zorgon Blat")
    assert state.unsupported == ["starring Zorgon Blat: no item in this catalog credits that person"]
    assert not state.constraints.people


def test_without_people_fields_a_person_is_said_unsupported():
    plain = [Item(it.id, it.title, "", it.categories, it.year) for it in ITEMS]
    reader = ConversationReader(Vocabulary(plain), lambda ids: [])
    state = reader.read(["something starring Clint Eastwood"])
    assert state.unsupported == ["starring Clint Eastwood: this catalog does not say who is in or made an item"]
    assert not PeopleLinker(plain, ["cast"]) and reader.vocabulary.people.find("Clint Eastwood") == []


def test_the_reply_says_what_was_read_in_natural_words():
    from agent.pipeline.chat import notes

    items = ITEMS + [Item("12", "Shining, The", "", ("Horror",), 1980, {"director": ["Stanley Kubrick"]})]
    reader = ConversationReader(Vocabulary(items), lambda ids: [])
    said = notes(reader.read(["Kubrick's films, but not The Shining"]))
    assert said == ['I read: you turned down "The Shining"; directed by Stanley Kubrick.']
