"""The LLM reader's format, worked by hand on a four-film catalog: the keys and allowed values
come from the catalog, a known reading is written as the JSON the model is trained on, a reply
is validated into the rule reader's structure (titles linked to the catalog, anything outside
the catalog dropped), the chosen field groups replace the rules', and the evaluation picks the
groups the LLM reads better."""

from __future__ import annotations

import json

import pytest

from agent.catalog import Item
from agent.pipeline.llm_reader import LLMReader, TurnFormat
from agent.pipeline.reader import READ_GROUPS, ConversationReader, Mention, Vocabulary, _Turn, merge_turn

ITEMS = [
    Item(
        "a",
        "The Moth Queen",
        categories=("Horror",),
        year=1988,
        metadata={"kind": "film", "tone": "dark", "runtime_min": 92},
    ),
    Item(
        "b",
        "Late Checkout",
        categories=("Comedy",),
        year=2004,
        metadata={"kind": "film", "tone": "light", "runtime_min": 101},
    ),
    Item(
        "c",
        "Harbor Lights",
        categories=("Drama", "Romance"),
        year=2019,
        metadata={"kind": "series", "tone": "thoughtful", "runtime_min": 50},
    ),
    Item(
        "d",
        "Wings Over the Channel",
        categories=("War",),
        year=1969,
        metadata={"kind": "film", "tone": "tense", "runtime_min": 131},
    ),
]


@pytest.fixture
def fmt() -> TurnFormat:
    return TurnFormat(Vocabulary(ITEMS))


def test_keys_and_schema_come_from_the_catalog(fmt):
    assert fmt.keys() == [
        "liked", "disliked", "seen", "mentioned", "genres", "not_genres", "year_min", "year_max",
        "kind", "not_kind", "tone", "not_tone", "min_runtime_min", "max_runtime_min", "count", "greeting",
    ]  # fmt: skip
    props = fmt.schema()["properties"]
    assert list(props) == fmt.keys()
    assert props["genres"]["items"]["enum"] == ["Comedy", "Drama", "Horror", "Romance", "War"]
    assert props["not_kind"]["items"]["enum"] == ["film", "series"]
    assert fmt.schema()["additionalProperties"] is False
    system = fmt.conversation("hi")[0]["content"]
    assert "Comedy, Drama, Horror, Romance, War" in system and "2019" in system and '"not_tone"' in system


def test_target_writes_only_the_keys_a_reading_needs_in_order(fmt):
    turn = _Turn(
        mentions=[
            Mention("b", "Late Checkout", "late checkout", "liked"),
            Mention("a", "The Moth Queen", "moth", "disliked"),
        ],
        excluded_categories=["Horror"],
        year_min=2000,
        values={"kind": ["series"]},
        ranges={"runtime_min": (None, 89.0)},
        count=3,
    )
    assert fmt.target(turn) == (
        '{"liked": ["Late Checkout"], "disliked": ["The Moth Queen"], "not_genres": ["Horror"], '
        '"year_min": 2000, "kind": ["series"], "max_runtime_min": 89, "count": 3}'
    )
    assert fmt.target(_Turn(greeting=True)) == '{"greeting": true}'
    assert fmt.target(_Turn()) == "{}"


def test_parse_links_titles_and_drops_what_the_catalog_lacks(fmt):
    reply = json.dumps(
        {
            "liked": ["wings over the chanel", "A Film Nobody Made"],
            "disliked": ["Moth Queen (1988)"],
            "seen": ["Late Checkout", "Wings Over the Channel"],  # already liked: the first sentiment stays
            "genres": ["Comedy", "Opera"],
            "not_genres": ["Horror"],
            "year_min": 1990,
            "year_max": "soon",
            "tone": ["light", "grim"],
            "not_kind": ["series"],
            "max_runtime_min": 95,
            "count": 99,
            "greeting": "yes",
            "mood": ["happy"],
        }
    )
    turn = fmt.parse(reply)
    assert [(m.item_id, m.sentiment) for m in turn.mentions] == [("d", "liked"), ("a", "disliked"), ("b", "seen")]
    assert turn.categories == ["Comedy"] and turn.excluded_categories == ["Horror"]
    assert (turn.year_min, turn.year_max) == (1990, None)
    assert turn.values == {"tone": ["light"]} and turn.excluded_values == {"kind": ["series"]}
    assert turn.ranges == {"runtime_min": (None, 95.0)}
    assert turn.count is None and turn.greeting is False
    with pytest.raises(ValueError, match="not JSON"):
        fmt.parse('{"liked": [')
    with pytest.raises(ValueError, match="not a JSON object"):
        fmt.parse('["Late Checkout"]')


def test_target_then_parse_gives_the_reading_back(fmt):
    turn = _Turn(
        mentions=[Mention("c", "Harbor Lights", "Harbor Lights", "mentioned")],
        categories=["Drama"],
        excluded_values={"tone": ["dark"]},
        ranges={"runtime_min": (60.0, None)},
    )
    back = fmt.parse(fmt.target(turn))
    assert [(m.item_id, m.sentiment) for m in back.mentions] == [("c", "mentioned")]
    assert (back.categories, back.excluded_values, back.ranges) == (
        ["Drama"],
        {"tone": ["dark"]},
        {"runtime_min": (60.0, None)},
    )


def test_merge_takes_the_chosen_groups_and_keeps_comparatives_with_the_rules():
    rules = _Turn(
        mentions=[Mention("a", "The Moth Queen", "moth queen", "liked")], categories=["Horror"], count=2, query="scary"
    )
    llm = _Turn(mentions=[Mention("a", "The Moth Queen", "moth queen", "disliked")], categories=["Comedy"], count=None)
    merged = merge_turn(rules, llm, ["mentions", "count"])
    assert [m.sentiment for m in merged.mentions] == ["disliked"] and merged.count is None
    assert merged.categories == ["Horror"] and merged.query == "scary"
    assert rules.mentions[0].sentiment == "liked"  # the rules' reading is not changed
    rules.comparisons = ["darker"]
    assert merge_turn(rules, llm, ["categories"]).categories == ["Horror"]
    with pytest.raises(KeyError):
        merge_turn(rules, llm, ["people"])


def test_the_conversation_reader_uses_a_reading_only_for_its_turn_and_groups():
    by_id = {it.id: it for it in ITEMS}
    reader = ConversationReader(Vocabulary(ITEMS), lambda ids: [by_id[i] for i in ids])
    text = "I loved The Moth Queen"
    llm = _Turn(mentions=[Mention("a", "The Moth Queen", "The Moth Queen", "disliked")], categories=["War"])
    state = reader.read(["a comedy", text], readings={text: llm}, groups=["mentions"])
    assert [(m.item_id, m.sentiment) for m in state.mentions] == [("a", "disliked")]
    assert state.constraints.categories == ["Comedy"]  # the categories group stayed with the rules
    rules_only = reader.read(["a comedy", text])
    assert [(m.item_id, m.sentiment) for m in rules_only.mentions] == [("a", "liked")]


class CannedEngine:
    def __init__(self, replies):
        self.replies, self.calls = replies, []

    def generate(self, conversations, max_tokens, adapter, temperature, json_schema, timeout=None):
        self.calls.append((conversations, adapter, json_schema))
        return [self.replies[c[-1]["content"]] for c in conversations]


def test_llm_reader_reads_each_text_once_and_reports_invalid_replies(fmt):
    engine = CannedEngine({"a comedy": '{"genres": ["Comedy"]}', "hello": "Hello! {"})
    readings, errors = LLMReader(engine, fmt, "reader").read(["a comedy", "hello", "a comedy", "  "])
    assert len(engine.calls) == 1 and len(engine.calls[0][0]) == 2
    assert engine.calls[0][1] == "reader" and engine.calls[0][2] == fmt.schema()
    assert readings["a comedy"].categories == ["Comedy"]
    assert list(errors) == ["hello"] and "not JSON" in errors["hello"]


def test_choose_groups_takes_a_group_only_where_the_llm_is_right_more_often(fmt):
    from agent.evaluation.chat_eval import choose_groups

    def report(**fields):
        return {"fields": {k.replace("__", "+").replace("_", "."): {"correct": v} for k, v in fields.items()}}

    rules = report(named=10, named__sentiment=8, constraints_categories=20, count=5, unclear=4)
    llm = report(named=10, named__sentiment=9, constraints_categories=20, count=4, unclear=6, constraints_tone=3)
    assert choose_groups(rules, llm, fmt) == ["mentions", "values", "greeting"]
    assert set(READ_GROUPS) >= set(choose_groups(rules, llm, fmt))
