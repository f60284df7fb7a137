"""Ingestion: formats, layout detection, and located errors for bad input."""

import json

import pytest

from agent.catalog import IngestError, Interaction, load_dataset, load_interactions, load_items
from tests.conftest import DEMO


def write(path, text):
    path.write_text(text)
    return path


def test_demo_catalog_loads(tmp_path):
    items = load_items(DEMO / "demo_items.jsonl")
    events = load_interactions(DEMO / "demo_interactions.jsonl")
    assert len(items) == 200 and len({i.id for i in items}) == 200
    assert all(i.title and i.categories and i.year for i in items)
    assert events and {e.item_id for e in events} <= {i.id for i in items}


def test_csv_items_and_iso_timestamps(tmp_path):
    items = write(tmp_path / "items.csv", "id,title,text,categories,year\nm1,Alpha,About a,Drama|War,1999\n")
    events = write(
        tmp_path / "interactions.csv", "user_id,item_id,timestamp,kind,value\nu1,m1,2024-01-02T03:04:05Z,like,1\n"
    )
    (item,) = load_items(items)
    assert item.categories == ("Drama", "War") and item.year == 1999
    (event,) = load_interactions(events)
    assert event.timestamp == 1704164645.0 and event.kind == "like"


def test_generic_folder_is_detected(tmp_path):
    write(tmp_path / "items.jsonl", json.dumps({"id": "a", "title": "A"}) + "\n")
    write(tmp_path / "interactions.jsonl", json.dumps({"user_id": "u", "item_id": "a", "timestamp": 5}) + "\n")
    dataset = load_dataset(tmp_path)
    assert dataset.source.startswith("generic") and len(dataset.interactions) == 1


def test_movielens_100k_layout(tmp_path):
    genres = ["0"] * 19
    genres[5] = "1"  # Comedy
    write(tmp_path / "u.item", "1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(genres) + "\n")
    write(tmp_path / "u.data", "196\t1\t3\t881250949\n")
    dataset = load_dataset(tmp_path)
    assert dataset.items[0].title == "Toy Story" and dataset.items[0].year == 1995
    assert dataset.items[0].categories == ("Comedy",)
    assert dataset.interactions[0].value == 3.0


def test_movielens_latest_small(movielens):
    dataset = load_dataset(movielens)
    assert len(dataset.items) == 9742 and len(dataset.interactions) == 100836
    toy = next(i for i in dataset.items if i.id == "1")
    assert toy.title == "Toy Story" and toy.year == 1995 and "Animation" in toy.categories


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("items.jsonl", '{"id": "a", "title": "A"}\n{"id": "b"}\n', r"items.jsonl:2: missing column\(s\): title"),
        ("items.jsonl", '{"id": "a", "title": "A"}\n{oops\n', r"items.jsonl:2: malformed JSON"),
        ("items.jsonl", '{"id": "bad id!", "title": "A"}\n', r"items.jsonl:1: bad item id"),
        (
            "items.jsonl",
            '{"id": "a", "title": "A"}\n{"id": "a", "title": "B"}\n',
            r"items.jsonl:2: item 'a' conflicts with its earlier row at line 1",
        ),
        ("items.csv", "id,title,year\na,A,nineteen\n", r"items.csv:2: bad year"),
        ("items.csv", "id,title,year\na,A,2150\n", r"items.csv:2: year 2150 is out of range 1800-2100"),
        (
            "interactions.jsonl",
            '{"user_id": "u", "item_id": "a", "timestamp": "yesterday"}\n',
            r"interactions.jsonl:1: unparsable timestamp",
        ),
        ("interactions.csv", "user_id,item_id\nu,a\n", r"interactions.csv:2: missing column\(s\): timestamp"),
        (
            "interactions.jsonl",
            '{"user_id": "u", "item_id": "a", "timestamp": 1, "kind": "buy"}\n',
            r"interactions.jsonl:1: unknown kind 'buy'",
        ),
    ],
)
def test_bad_input_names_file_and_line(tmp_path, name, text, message):
    path = write(tmp_path / name, text)
    loader = load_items if name.startswith("items") else load_interactions
    with pytest.raises(IngestError, match=message):
        loader(path)


def test_same_duplicate_row_is_accepted(tmp_path):
    row = '{"id": "a", "title": "A"}\n'
    assert len(load_items(write(tmp_path / "items.jsonl", row + row))) == 1


def test_movielens_missing_column(tmp_path):
    write(tmp_path / "movies.csv", "movieId,title\n1,A (1990)\n")
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4,5\n")
    with pytest.raises(IngestError, match=r"movies.csv:1: missing column\(s\): genres"):
        load_dataset(tmp_path)


def test_interaction_with_unknown_item_is_rejected(tmp_path):
    write(tmp_path / "items.jsonl", '{"id": "a", "title": "A"}\n')
    write(tmp_path / "interactions.jsonl", '{"user_id": "u", "item_id": "zzz", "timestamp": 1}\n')
    with pytest.raises(IngestError, match="unknown item 'zzz'"):
        load_dataset(tmp_path)


def test_unknown_layout_says_what_it_expects(tmp_path):
    with pytest.raises(IngestError, match="no known layout"):
        load_dataset(tmp_path)


def test_turned_down_keeps_each_items_latest_opinion():
    from agent.catalog import turned_down

    events = [
        Interaction("u", "a", 1.0, "dislike"),
        Interaction("u", "b", 2.0, "rating", 2.0),  # low: turned down
        Interaction("u", "c", 3.0, "rating", 2.5),  # middling: not
        Interaction("u", "d", 4.0, "rating", 1.0),
        Interaction("u", "d", 5.0, "like"),  # liked later: no longer turned down
        Interaction("u", "e", 6.0, "skip"),  # a skip is not a dislike
        Interaction("u", "f", 8.0, "rating", 5.0),
        Interaction("u", "f", 7.0, "dislike"),  # earlier than the rating, though listed after it
    ]
    assert turned_down(events) == ["a", "b"]


def test_history_and_turned_down_are_one_rule_each():
    """Hand-worked: which events put an item in the history, and which turn it down. A rating of
    2 does both (the item was watched, and disliked); either way it is never recommended again."""
    from agent.catalog import in_history, turned_down
    from agent.store.history import user_sequences

    def event(kind, value=None, item="x"):
        return Interaction("u", item, 1.0, kind, value)

    cases = [
        ("view", None, True),
        ("click", None, True),
        ("like", None, True),
        ("dwell", 3.0, True),
        ("rating", 4.0, True),
        ("rating", 2.0, True),
        ("rating", 1.5, False),
        ("dislike", None, False),
        ("skip", None, False),
        ("impression", None, False),
        ("draft_like", None, False),
    ]
    assert [in_history(event(k, v)) for k, v, _ in cases] == [want for _, _, want in cases]
    events = [
        Interaction("u", i, float(t), k, v)
        for t, (k, v, i) in enumerate(
            [("rating", 2.0, "a"), ("rating", 1.0, "b"), ("like", None, "c"), ("skip", None, "d")]
        )
    ]
    assert user_sequences(events) == {"u": ["a", "c"]}
    assert turned_down(events) == ["a", "b"]


def test_each_history_item_is_cited_by_the_strongest_thing_the_user_did():
    """Hand-worked (catalog.CITED_AS): a view or a rating is "watched", a like "liked", a click
    or a dwell "looked at"; the strongest kind on an item decides; an item out of the history
    (a low rating, a dislike, a shown impression) is not cited at all."""
    from agent.catalog import cited_as

    events = [
        Interaction("u", "a", 1.0, "view"),
        Interaction("u", "b", 2.0, "rating", 4.0),
        Interaction("u", "c", 3.0, "like"),
        Interaction("u", "d", 4.0, "click"),
        Interaction("u", "e", 5.0, "dwell", 40.0),
        Interaction("u", "f", 6.0, "click"),
        Interaction("u", "f", 7.0, "like"),  # a like outranks a click
        Interaction("u", "g", 8.0, "like"),
        Interaction("u", "g", 9.0, "rating", 3.0),  # and a rating outranks a like
        Interaction("u", "h", 10.0, "rating", 1.0),  # below POLARITY.history_rating: not history
        Interaction("u", "i", 11.0, "dislike"),
        Interaction("u", "j", 12.0, "impression"),
    ]
    assert cited_as(events) == {
        "a": "watched",
        "b": "watched",
        "c": "liked",
        "d": "looked at",
        "e": "looked at",
        "f": "liked",
        "g": "watched",
    }


def test_an_impressions_reaction_is_read_from_the_polarity_table():
    """Hand-worked (catalog.POLARITY): clicks and likes are for, skips and dislikes against; a
    rating of 4 and up is for, 2 and down against; a dwell of 30 s and up is for; views, short
    dwells, middling ratings and thumbs on Muse's texts are no opinion of the item."""
    from agent.catalog import POLARITY, FeedbackPolarity, reaction

    cases = [
        ("click", None, "pos"),
        ("like", None, "pos"),
        ("skip", None, "neg"),
        ("dislike", None, "neg"),
        ("rating", 4.0, "pos"),
        ("rating", 3.5, None),
        ("rating", 2.0, "neg"),
        ("dwell", 30.0, "pos"),
        ("dwell", 29.0, None),
        ("view", None, None),
        ("draft_like", None, None),
    ]
    assert [reaction(Interaction("u", "x", 1.0, k, v)) for k, v, _ in cases] == [want for _, _, want in cases]
    # the table is configuration: a stricter one moves the same events
    strict = FeedbackPolarity(positive=("like",), engaged_dwell_s=60.0)
    assert (
        strict.reaction(Interaction("u", "x", 1.0, "click")) is None
        and POLARITY.reaction(Interaction("u", "x", 1.0, "click")) == "pos"
    )
    assert strict.reaction(Interaction("u", "x", 1.0, "dwell", 45.0)) is None
