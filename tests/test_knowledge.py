"""The knowledge-base join (agent/knowledge.py) on hand-written facts: what is read, what joins."""

import pytest

from agent.catalog import IngestError, Item
from agent.knowledge import join_facts, load_facts

KB = """1 Kismet directed_by William Dieterle
2 Kismet starred_actors Marlene Dietrich, Ronald Colman
3 Kismet release_year 1944
4 Kismet in_language English

1 The Bride Wore Black directed_by François Truffaut
2 The Bride Wore Black written_by Cornell Woolrich, François Truffaut
3 The Bride Wore Black release_year 1968
4 The Bride Wore Black in_language French
5 The Bride Wore Black has_tags revenge, wedding

1 Heat directed_by Michael Mann
2 Heat release_year 1995

1 Heat directed_by Some Body
2 Heat release_year 1972
"""


@pytest.fixture
def kb(tmp_path):
    path = tmp_path / "movie_kb.txt"
    path.write_text(KB, encoding="utf-8")
    return path


def test_facts_are_read_per_film_with_lists_of_names(kb):
    films = load_facts(kb)
    assert [(f.title, f.year) for f in films] == [
        ("Kismet", 1944),
        ("The Bride Wore Black", 1968),
        ("Heat", 1995),
        ("Heat", 1972),
    ]
    bride = films[1]
    assert bride.facts == {
        "director": ["François Truffaut"],
        "writer": ["Cornell Woolrich", "François Truffaut"],
        "language": ["French"],
    }  # tags are not joined: the catalog has its own


def test_the_join_matches_title_and_year_and_keeps_the_items_own_metadata(kb):
    items = [
        Item("1", "Bride Wore Black, The", year=1968),  # MovieLens' trailing article
        Item("2", "Kismet", year=1945, metadata={"language": "Hindustani"}),  # one year off; own field kept
        Item("3", "Heat", year=1995),  # two films of the name: the year picks
        Item("4", "Heat", year=1986),  # neither year: not guessed
        Item("5", "Alien", year=1979),  # not in the knowledge base
    ]
    joined, report = join_facts(items, load_facts(kb))
    by = {it.id: it.metadata for it in joined}
    assert by["1"]["director"] == ["François Truffaut"] and by["1"]["language"] == ["French"]
    assert by["2"] == {
        "language": "Hindustani",
        "director": ["William Dieterle"],
        "cast": ["Marlene Dietrich", "Ronald Colman"],
    }
    assert by["3"] == {"director": ["Michael Mann"]}
    assert by["4"] == {} and by["5"] == {}
    assert [it.id for it in joined] == ["1", "2", "3", "4", "5"]
    assert (report.items, report.matched, report.films) == (5, 3, 4)
    assert report.with_field == {"director": 3, "writer": 1, "cast": 1, "language": 1}
    assert "facts joined to 3 of 5 items" in report.summary()


def test_a_bad_line_or_a_missing_file_is_an_ingest_error_naming_it(kb, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("1 Kismet directed_by William Dieterle\n2 Kismet is_about nothing\n", encoding="utf-8")
    with pytest.raises(IngestError, match=r"bad.txt:2: expected '<n> <title> <relation> <value>'"):
        load_facts(bad)
    bad.write_text("1 Kismet release_year soon\n", encoding="utf-8")
    with pytest.raises(IngestError, match="bad.txt:1: release_year 'soon' is not a year"):
        load_facts(bad)
    with pytest.raises(IngestError, match="no such file"):
        load_facts(tmp_path / "absent.txt")
