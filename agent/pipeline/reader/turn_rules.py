"""The rules that read one turn, each a function over the catalog's ``Vocabulary`` that writes
into the turn and ``consume`` s the characters it read: people, eras and years, comparatives,
asks no catalog field holds, numbers and counts, category and value words."""

from __future__ import annotations

import re
from collections.abc import Sequence

from agent.catalog import Item
from agent.pipeline.intent import rule_intent
from agent.pipeline.reader.clauses import _clauses, _negated_at, _sentiment
from agent.pipeline.reader.lexicon import (
    _COUNT,
    _LONG,
    _LOWER_BOUND,
    _RUNTIME_BOUND,
    _SHORT,
    _SHOW_VERB,
    _STRICT,
    _YEAR_WORDS,
    CATEGORY_WORDS,
    DARKNESS,
    ERA,
    GENERIC_NOUNS,
    LONG_MINUTES,
    MAX_COUNT,
    NOT_READ,
    NUMBERS,
    SHORT_MINUTES,
    TONE_FALLBACK,
    VALUE_WORDS,
)
from agent.pipeline.reader.linking import Vocabulary
from agent.pipeline.reader.state import _Turn


def read_people(v: Vocabulary, people: Sequence, masked: str, turn: _Turn, consume) -> None:
    """Each person found: a constraint on the fields the words point at (``PeopleLinker``),
    an exclusion when their clause is negated ("nothing with Adam Sandler") or the words turn
    them down as they would a film ("I can't stand Adam Sandler movies")."""
    clauses = _clauses(masked.lower())
    for p in people:
        fields = v.people.fields_of(p.name, p.field)
        negated = _negated_at(clauses, p.start, masked.lower()) or _sentiment(masked, p.start, p.end) == "disliked"
        (turn.excluded_people if negated else turn.people)[p.name] = fields
        possessive = re.match(r"['’]s\b", masked[p.end :])
        consume(p.cue_start, p.end + (possessive.end() if possessive else 0))


def read_era_and_years(v: Vocabulary, lower: str, turn: _Turn, consume) -> None:
    newest = v.newest_year
    for pattern, (lo, hi) in ERA:
        for m in re.finditer(pattern, lower):
            if newest is not None:
                if lo is not None:
                    turn.year_min = newest - lo
                if hi is not None:
                    turn.year_max = newest - hi
            consume(m.start(), m.end())
    intent = rule_intent(lower, ())
    if intent.year_min is not None or intent.year_max is not None:
        turn.year_min = intent.year_min if intent.year_min is not None else turn.year_min
        turn.year_max = intent.year_max if intent.year_max is not None else turn.year_max
        for m in re.finditer(
            rf"\b(?:{_YEAR_WORDS})?[\s-]*(?:19|20)?\d0'?s\b|\b(?:{_YEAR_WORDS})?[\s-]*\d{{4}}(?:\s+on)?\b",
            lower,
        ):
            consume(m.start(), m.end())


def compare(v: Vocabulary, kind: str, refs: list[Item], named: str, much: bool, turn: _Turn) -> None:
    than = f" than {named}" if named else ""
    turn.comparisons.append(f"{'much ' if much else ''}{kind}{than}")
    if kind in ("darker", "lighter"):
        tone = v.field_of("tone", "dark")
        if tone is None:
            light = [c for c in ("Comedy", "Family", "Children", "Animation", "Musical") if c in v.categories]
            if kind == "darker":
                turn.excluded_categories += light
            else:
                turn.categories += light[:1]
            return
        seen = [DARKNESS.get(str(r.metadata.get(tone)), 2) for r in refs] or [2]
        if kind == "darker":
            floor = min(4, max(2, max(seen) + 1))
            turn.values[tone] = [t for t, d in DARKNESS.items() if d >= floor and t in v.text_fields[tone]]
        else:
            ceiling = max(0, min(1, min(seen) - 1))
            turn.values[tone] = [t for t, d in DARKNESS.items() if d <= ceiling and t in v.text_fields[tone]]
    elif kind == "funnier":
        turn.categories += [c for c in ("Comedy",) if c in v.categories]
    elif kind in ("newer", "older"):
        years = [r.year for r in refs if r.year]
        if not years:
            return
        step = 10 if much else 1
        if kind == "newer":
            turn.year_min = round(sum(years) / len(years)) + step
        else:
            turn.year_max = round(sum(years) / len(years)) - step
    else:  # shorter, longer
        name = v.runtime_field()
        runtimes = [r.metadata.get(name) for r in refs if name and isinstance(r.metadata.get(name), (int, float))]
        if name is None:
            turn.unsupported.append(f"{kind}: this catalog has no runtimes")
        elif runtimes:
            mean = sum(runtimes) / len(runtimes)
            step = 20 if much else 1
            turn.ranges[name] = (None, mean - step) if kind == "shorter" else (mean + step, None)


def read_not_read(v: Vocabulary, text: str, turn: _Turn, consume) -> None:
    """``NOT_READ`` asks: said in the reply as unsupported and kept out of the query, unless
    the catalog has the field with a value the words name."""
    for pattern, name, why in NOT_READ:
        values = {v.lower() for v in v.text_fields.get(name, ())}
        credits = name == "people" and bool(v.people)
        for m in re.finditer(pattern, text):
            said = m.group().strip()
            if any(w in values for w in re.findall(r"[\w-]+", said.lower())):
                continue
            reason = why
            if credits:  # the people the catalog credits were read before; this one it lacks
                if not re.search(r"\b[A-Z][\w'.-]+(?:\s+[A-Z][\w'.-]+)*\s*$", said):
                    continue
                reason = "no item in this catalog credits that person"
            consume(m.start(), m.end())
            turn.unsupported.append(f"{said}: {reason}")


def read_numbers(v: Vocabulary, lower: str, turn: _Turn, consume) -> None:
    name = v.runtime_field()
    for m in _RUNTIME_BOUND.finditer(lower):
        consume(m.start(), m.end())
        if name is None:
            turn.unsupported.append(f"{m.group().strip()}: this catalog has no runtimes")
            continue
        if m["h"]:
            hours = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3}.get(m["h"].lower()) or int(m["h"])
            minutes = 60 * hours + (30 if "half" in m.group() else 0)
            op, n = m["hop"], float(minutes)
        else:
            op, n = m["op"], float(m["n"])
        if op is None:  # "a two-hour film": about that long, so up to a quarter hour more
            turn.ranges[name] = (None, n + 15)
        elif op.lower() in _LOWER_BOUND:
            turn.ranges[name] = (n + (1 if op.lower() in _STRICT else 0), None)
        else:
            turn.ranges[name] = (None, n - (1 if op.lower() in _STRICT else 0))
    for pattern, bound in ((_SHORT, (None, SHORT_MINUTES)), (_LONG, (LONG_MINUTES, None))):
        for m in pattern.finditer(lower):
            consume(m.start(), m.end())
            if name is None:
                turn.unsupported.append(f"{m.group()}: this catalog has no runtimes")
            elif name not in turn.ranges:
                turn.ranges[name] = bound
    if m := _COUNT.search(lower):
        word = m["n"].lower()
        n = int(word) if word.isdigit() else NUMBERS[word]
        if 1 <= n <= MAX_COUNT:
            turn.count = n
            consume(m.start(), m.start() + len(m["n"]))


def read_words(v: Vocabulary, lower: str, turn: _Turn, consume) -> None:
    """Category and metadata-value words, each negated when its clause is."""
    for m in _SHOW_VERB.finditer(lower):  # "show me a thriller" asks for no TV show
        consume(m.start(), m.end())
        lower = lower[: m.start()] + " " * (m.end() - m.start()) + lower[m.end() :]
    clauses = _clauses(lower)
    phrases = sorted(set(CATEGORY_WORDS) | set(VALUE_WORDS) | {c.lower() for c in v.categories}, key=len, reverse=True)
    value_words = {val.lower(): (name, val) for name, vals in v.text_fields.items() for val in vals}
    phrases += [w for w in value_words if w not in phrases]
    for phrase in phrases:
        for m in re.finditer(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", lower):
            negated = _negated_at(clauses, m.start(), lower)
            consume(m.start(), m.end())
            lower = lower[: m.start()] + " " * (m.end() - m.start()) + lower[m.end() :]
            read_word(v, phrase, negated, turn, value_words)


def read_word(v: Vocabulary, phrase: str, negated: bool, turn: _Turn, value_words: dict) -> None:
    known = {c.lower(): c for c in v.categories}
    target: list[str] = []
    if phrase in VALUE_WORDS or phrase in value_words:
        hint, value = VALUE_WORDS.get(phrase) or value_words[phrase]
        name = v.field_of(hint, value)
        said = turn.values.get(name, []) + turn.excluded_values.get(name, [])
        if name is not None and phrase in GENERIC_NOUNS and not negated and not said:
            return  # "a war film" asks for a war film, not for films rather than series
        if name is not None:
            bucket = turn.excluded_values if negated else turn.values
            if value not in bucket.setdefault(name, []):
                bucket[name].append(value)
            return
        if hint == "tone":
            target = [c for c in TONE_FALLBACK.get(value, ()) if c.lower() in known]
            if not target:
                turn.unsupported.append(f"{phrase}: this catalog does not say which items are {value}")
                return
        else:
            turn.unsupported.append(f"{phrase}: this catalog does not say which items are {value}")
            return
    if phrase in CATEGORY_WORDS:
        target = [known[c.lower()] for c in CATEGORY_WORDS[phrase] if c.lower() in known]
    elif phrase in known:
        target = [known[phrase]]
    for c in target:
        bucket = turn.excluded_categories if negated else turn.categories
        if c not in bucket:
            bucket.append(c)
