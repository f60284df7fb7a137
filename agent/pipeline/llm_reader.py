"""The LLM reader: one user turn of a chat read by the language model into the rule reader's
structure (``reader._Turn``), so the two can be compared field by field and combined.

The model writes a small JSON object (``TurnFormat``): the titles the message names under the
sentiment they carry (``liked``, ``disliked``, ``seen``, ``mentioned``), genres wanted and
turned down, a year range, each text metadata field of the catalog and its negation
(``kind``/``not_kind``, ``tone``/``not_tone``), a runtime range, a count and whether the turn is
only a greeting. Keys and allowed values are read from the catalog at load (``Vocabulary``), the
prompt is ``prompts/read_turn_system.jinja`` and the schema is enforced by vLLM's structured
outputs (the in-process engine does not enforce it; every reply is validated here either way).
Titles are free strings, linked to the catalog by the rule reader's ``TitleLinker`` (typos,
articles and years tolerated), so a title that links to nothing is dropped, never invented.

What the model reads is what ``finetune/reader_sft.py`` trains it to write, from the generated
conversations' expected states (``TurnFormat.target``). Which groups of fields are taken from
the model and which stay with the rules is ``READER_GROUPS`` below, chosen on the development
conversations (docs/chat.md); pointers, comparatives, people, what cannot be honoured and the
query words are always the rules' (``reader.READ_GROUPS``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from agent.catalog import YEAR_MAX, YEAR_MIN
from agent.pipeline.prompts import render
from agent.pipeline.reader import MAX_COUNT, Mention, Vocabulary, _Turn

SENTIMENT_KEYS = ("liked", "disliked", "seen", "mentioned")
MAX_LISTED = 40  # a text field with more values is left to the rules (the prompt would be long)
MAX_TITLES = 6  # titles per sentiment
READ_TOKENS = 96  # a reading is 10-50 tokens of JSON
# Field groups (``reader.READ_GROUPS``) the served reading takes from the LLM; the rest stay
# with the rules. Chosen per group on the generated development conversations (docs/chat.md):
# empty while no adapter reads any group better than the rules.
READER_GROUPS: tuple[str, ...] = ()


class TurnFormat:
    """The JSON one turn is read into, for one catalog (its ``Vocabulary``): the prompt
    (``conversation``), the schema vLLM enforces (``schema``), the training target written from a
    known reading (``target``) and the validation of a reply into a ``_Turn`` (``parse``)."""

    def __init__(self, vocabulary: Vocabulary):
        self.vocabulary = vocabulary
        self.genres = list(vocabulary.categories)
        self.fields = {
            name: sorted(values)
            for name, values in sorted(vocabulary.text_fields.items())
            if 0 < len(values) <= MAX_LISTED
        }
        self.runtime = vocabulary.runtime_field()
        self._system = render(
            "read_turn_system.jinja",
            genres=self.genres,
            newest=vocabulary.newest_year or "unknown",
            fields=self.fields,
            runtime=self.runtime,
        )

    # ------------------------------------------------------------ the prompt and the schema

    def conversation(self, text: str) -> list[dict[str, str]]:
        """The two-message chat the model answers for one user turn ``text``."""
        return [{"role": "system", "content": self._system}, {"role": "user", "content": text}]

    def keys(self) -> list[str]:
        """Every key a reading may hold, in the order the model writes them."""
        out = [*SENTIMENT_KEYS, "genres", "not_genres", "year_min", "year_max"]
        for name in self.fields:
            out += [name, f"not_{name}"]
        if self.runtime:
            out += [f"min_{self.runtime}", f"max_{self.runtime}"]
        return [*out, "count", "greeting"]

    def schema(self) -> dict:
        """JSON schema of a reading: every key optional, values from the catalog's lists."""

        def listed(values: Sequence[str]) -> dict:
            return {"type": "array", "items": {"enum": list(values)}, "maxItems": len(values), "uniqueItems": True}

        titles = {"type": "array", "items": {"type": "string", "maxLength": 120}, "maxItems": MAX_TITLES}
        year = {"type": ["integer", "null"], "minimum": YEAR_MIN, "maximum": YEAR_MAX}
        props: dict[str, Any] = {key: titles for key in SENTIMENT_KEYS}
        props |= {"genres": listed(self.genres), "not_genres": listed(self.genres), "year_min": year, "year_max": year}
        for name, values in self.fields.items():
            props[name] = props[f"not_{name}"] = listed(values)
        if self.runtime:
            props[f"min_{self.runtime}"] = props[f"max_{self.runtime}"] = {
                "type": ["number", "null"],
                "minimum": 0,
                "maximum": 1000,
            }
        props["count"] = {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_COUNT}
        props["greeting"] = {"type": "boolean"}
        return {"type": "object", "properties": props, "additionalProperties": False}

    # ------------------------------------------------------------ known reading -> JSON

    def target(self, turn: _Turn) -> str:
        """The JSON a correct reading of a turn holds (``turn``: that reading), with only the
        keys it needs, in ``keys`` order: what the model is trained to write."""
        out: dict[str, Any] = {}
        for key in SENTIMENT_KEYS:
            titles = [m.title for m in turn.mentions if m.sentiment == key]
            if titles:
                out[key] = titles
        if turn.categories:
            out["genres"] = list(turn.categories)
        if turn.excluded_categories:
            out["not_genres"] = list(turn.excluded_categories)
        if turn.year_min is not None:
            out["year_min"] = turn.year_min
        if turn.year_max is not None:
            out["year_max"] = turn.year_max
        for name in self.fields:
            if turn.values.get(name):
                out[name] = list(turn.values[name])
            if turn.excluded_values.get(name):
                out[f"not_{name}"] = list(turn.excluded_values[name])
        if self.runtime and self.runtime in turn.ranges:
            low, high = turn.ranges[self.runtime]
            if low is not None:
                out[f"min_{self.runtime}"] = _number(low)
            if high is not None:
                out[f"max_{self.runtime}"] = _number(high)
        if turn.count is not None:
            out["count"] = turn.count
        if turn.greeting:
            out["greeting"] = True
        return json.dumps(out, ensure_ascii=False)

    # ------------------------------------------------------------ reply -> reading

    def parse(self, reply: str) -> _Turn:
        """The reading a reply holds. Keys outside the format, values outside the catalog's
        lists and titles that link to no catalog film are dropped; a film named twice keeps the
        first sentiment. Raises ``ValueError`` when the reply is not a JSON object."""
        try:
            data = json.loads(reply)
        except json.JSONDecodeError as e:
            raise ValueError(f"the reading is not JSON: {e}") from e
        if not isinstance(data, dict):
            raise ValueError("the reading is not a JSON object")  # noqa: TRY004 (one error for a bad reply)
        turn = _Turn()
        named: set[str] = set()
        for key in SENTIMENT_KEYS:
            for words in _strings(data.get(key))[:MAX_TITLES]:
                found = self.vocabulary.titles.find(words)
                if not found:
                    continue
                item = max(found, key=lambda f: f[2] - f[1])[0]  # the longest span of the words
                if item.id not in named:
                    named.add(item.id)
                    turn.mentions.append(Mention(item.id, item.title, words, key))
        genres = set(self.genres)
        turn.categories = [g for g in _strings(data.get("genres")) if g in genres]
        turn.excluded_categories = [g for g in _strings(data.get("not_genres")) if g in genres]
        turn.categories = [g for g in turn.categories if g not in turn.excluded_categories]
        turn.year_min, turn.year_max = _year(data.get("year_min")), _year(data.get("year_max"))
        for name, values in self.fields.items():
            allowed = [v for v in _strings(data.get(name)) if v in values]
            banned = [v for v in _strings(data.get(f"not_{name}")) if v in values and v not in allowed]
            if allowed:
                turn.values[name] = allowed
            if banned:
                turn.excluded_values[name] = banned
        if self.runtime:
            low, high = _minutes(data.get(f"min_{self.runtime}")), _minutes(data.get(f"max_{self.runtime}"))
            if low is not None or high is not None:
                turn.ranges[self.runtime] = (low, high)
        count = data.get("count")
        if isinstance(count, int) and not isinstance(count, bool) and 1 <= count <= MAX_COUNT:
            turn.count = count
        turn.greeting = data.get("greeting") is True
        return turn


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str) and v.strip()] if isinstance(value, list) else []


def _year(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and YEAR_MIN <= value <= YEAR_MAX else None


def _minutes(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1000:
        return None
    return float(value)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


class LLMReader:
    """Reads user turns with the language model: ``engine`` (``agent.llm.engine.Engine``), the
    LoRA adapter ``adapter`` that was trained to write ``TurnFormat``'s JSON (None: the base
    model, zero-shot) and the catalog's ``fmt``."""

    def __init__(self, engine, fmt: TurnFormat, adapter: str | None = None, max_tokens: int = READ_TOKENS):
        self.engine, self.fmt, self.adapter, self.max_tokens = engine, fmt, adapter, max_tokens

    def read(self, texts: Sequence[str], timeout: float | None = None) -> tuple[dict[str, _Turn], dict[str, str]]:
        """Each distinct text's reading in one batch: ``(readings, errors)``, text -> ``_Turn``
        for the replies that validate and text -> why for those that do not (the rules read
        those alone). Engine errors (``EngineError``, ``EngineRequestError``) propagate: the
        caller decides what an LLM that is down means."""
        unique = list(dict.fromkeys(t for t in texts if t.strip()))
        if not unique:
            return {}, {}
        replies = self.engine.generate(
            [self.fmt.conversation(t) for t in unique],
            self.max_tokens,
            self.adapter,
            0.0,
            self.fmt.schema(),
            timeout=timeout,
        )
        readings, errors = {}, {}
        for text, reply in zip(unique, replies):
            try:
                readings[text] = self.fmt.parse(reply)
            except ValueError as e:
                errors[text] = str(e)[:200]
        return readings, errors
