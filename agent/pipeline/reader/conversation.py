"""``ConversationReader``: one user turn through the rules in order (``read_turn``), and the
turns of a conversation folded into one ``RequestState`` (``read``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields as dataclass_fields

from agent.catalog import Item
from agent.pipeline.reader.clauses import _clause_of, _clauses, _sentiment
from agent.pipeline.reader.filler import ASKING, GREETING
from agent.pipeline.reader.lexicon import _MUCH, COMPARATIVES, SOFT
from agent.pipeline.reader.linking import YEAR_AFTER, Vocabulary, title_end, unknown_titles
from agent.pipeline.reader.state import Constraints, Mention, RequestState, _fold, _Turn, merge_turn
from agent.pipeline.reader.turn_rules import (
    compare,
    read_era_and_years,
    read_not_read,
    read_numbers,
    read_people,
    read_words,
)


class ConversationReader:
    """Reads each user turn (``read_turn``) and folds the turns into one ``RequestState``
    (``read``). ``vocabulary``: the catalog's; ``items``: item id -> Item for the picks and films a
    comparative refers to (e.g. the store's ``get_items``)."""

    def __init__(self, vocabulary: Vocabulary, items: Callable[[Sequence[str]], list[Item]]):
        self.vocabulary, self.items = vocabulary, items

    # ------------------------------------------------------------ one turn

    def read_turn(self, text: str, last_picks: Sequence[str] = ()) -> _Turn:
        """One user message (pointers already removed); ``last_picks``: the ids Muse showed
        just before it, what a comparative without a named film compares with."""
        turn = _Turn()
        if not text.strip() or not re.search(r"\w", text):
            return turn
        if GREETING.match(text.strip()):
            turn.greeting = True
            return turn
        text = self._soft(text, turn, last_picks)
        rest = list(text)  # characters consumed by a rule become spaces, what is left is the query

        def consume(start: int, end: int) -> None:
            rest[start:end] = " " * (end - start)

        # People next to a cue ("with Marlene Dietrich", "Barry Levinson movies") come before
        # titles, which may share their words; a bare full name only where no title is.
        people = self.vocabulary.people.find(text)
        unseen = list(text)
        for p in people:
            if p.cued:
                unseen[p.start : p.end] = " " * (p.end - p.start)
        found = self.vocabulary.titles.find("".join(unseen))
        people = [p for p in people if p.cued or not any(s < p.end and p.start < e for _, s, e in found)]
        masked = list(text)  # the cues are read with every title blanked out: "Saw" is no "saw"
        for start, end in [(s, title_end(text, i, e)) for i, s, e in found] + [(p.start, p.end) for p in people]:
            masked[start:end] = "x" * (end - start)
        masked = "".join(masked)
        read_people(self.vocabulary, people, masked, turn, consume)
        for item, start, end in found:
            turn.mentions.append(Mention(item.id, item.title, text[start:end], _sentiment(masked, start, end)))
            year = YEAR_AFTER.match(text, end)
            consume(start, year.end() if year else end)
        for start, end in unknown_titles(masked, found):
            turn.unsupported.append(f'"{text[start:end]}": not in the catalog')
            consume(start, end)
        read_not_read(self.vocabulary, "".join(rest), turn, consume)
        lower = "".join(rest).lower()
        read_era_and_years(self.vocabulary, lower, turn, consume)
        lower = "".join(rest).lower()
        self._comparatives(lower, turn, consume, last_picks)
        lower = "".join(rest).lower()
        read_numbers(self.vocabulary, lower, turn, consume)
        lower = "".join(rest).lower()
        read_words(self.vocabulary, lower, turn, consume)
        lower = "".join(rest).lower()
        clauses = _clauses(lower)
        kept = [w for s, e, negated in clauses if not negated for w in re.findall(r"[\w'-]+", lower[s:e])]
        content = [w for w in kept if w not in ASKING and not w.isdigit() and len(w) > 1]
        turn.query = " ".join(w for w in (turn.query, " ".join(content)) if w)
        return turn

    def _soft(self, text: str, turn: _Turn, last_picks: Sequence[str]) -> str:
        """Reads each clause with a ``SOFT`` cue on its own: its constraints become the turn's
        preferences, its films and words join the turn's; returns ``text`` with those clauses
        blanked, for the hard reading. A cue inside a film's title ("Catch Me If You Can") is none."""
        spans = []
        cues = list(SOFT.finditer(text))
        titles = [(s, e) for _, s, e in self.vocabulary.titles.find(text)] if cues else []
        for m in cues:
            if any(s <= m.start() < e for s, e in titles):
                continue
            start, end = _clause_of(text, m.start())
            if not spans or start >= spans[-1][1]:
                spans.append((start, end))
        for start, end in spans:
            clause = text[start:end]
            cue = next(c for c in SOFT.finditer(clause) if not any(s <= start + c.start() < e for s, e in titles))
            soft = self.read_turn(
                clause[: cue.start()] + " " * (cue.end() - cue.start()) + clause[cue.end() :], last_picks
            )
            for name in dataclass_fields(Constraints):
                setattr(turn.preferences, name.name, getattr(soft, name.name))
            turn.mentions += soft.mentions
            turn.unsupported += soft.unsupported
            turn.query = " ".join(w for w in (turn.query, soft.query) if w)
        for start, end in spans:
            text = text[:start] + " " * (end - start) + text[end:]
        return text

    def _references(self, turn: _Turn, last_picks: Sequence[str]) -> tuple[list[Item], str]:
        named = [m.item_id for m in turn.mentions if m.sentiment != "disliked"]
        ids = named or list(last_picks)
        refs = self.items(ids) if ids else []
        if named and refs:
            return refs, " and ".join(f'"{r.title}"' for r in refs)
        return refs, "the last picks" if refs else ""

    def _comparatives(self, lower: str, turn: _Turn, consume, last_picks: Sequence[str]) -> None:
        for phrase, kind in COMPARATIVES.items():
            for m in re.finditer(rf"\b{re.escape(phrase)}\b(?!\s+than\s+\d)", lower):  # not "longer than 95 minutes"
                consume(m.start(), m.end())
                refs, named = self._references(turn, last_picks)
                much = bool(_MUCH.search(lower[: m.start()]))
                compare(self.vocabulary, kind, refs, named, much, turn)

    # ------------------------------------------------------------ the conversation

    def read(
        self,
        turns: Sequence[str],
        shown: Sequence[Sequence[str]] = (),
        pointed_like=(),
        pointed_exclude=(),
        readings: Mapping[str, _Turn] | None = None,
        groups: Iterable[str] = (),
    ):
        """The state of a conversation: ``turns``, the user messages oldest first (pointers
        removed); ``shown[i]``: the ids of the reply before user turn ``i + 1`` (as many as there
        are earlier replies); ``pointed_*``: items the newest turn pointed at. ``readings``: turn
        text -> another reader's reading of it (the LLM's), whose ``groups`` replace the rules'
        (``merge_turn``); a turn without one is the rules' alone."""
        groups = tuple(groups)
        state = RequestState(pointed_like=list(pointed_like), pointed_exclude=list(pointed_exclude))
        c = state.constraints
        mentions: dict[str, Mention] = {}
        queries = []
        for n, text in enumerate(turns):
            before = shown[n - 1] if 0 < n <= len(shown) else (shown[-1] if shown and n > 0 else ())
            turn = self.read_turn(text, before)
            if readings and text in readings:
                turn = merge_turn(turn, readings[text], groups)
            for m in turn.mentions:
                mentions.pop(m.item_id, None)
                mentions[m.item_id] = m
            _fold(c, turn)
            if not turn.preferences.empty():  # the newest turn that asks softly says what is preferred
                state.preferences = turn.preferences
            state.count = turn.count if turn.count is not None else state.count
            state.comparisons = turn.comparisons or state.comparisons
            state.unsupported += [u for u in turn.unsupported if u not in state.unsupported]
            if turn.query:
                queries.append(turn.query)
            last = turn
        state.mentions = list(mentions.values())
        state.query = " ".join(queries) or None
        if turns:
            says_something = not last.empty() or bool(
                last.mentions
                or not last.preferences.empty()
                or last.comparisons
                or last.count
                or last.query
                or pointed_like
                or pointed_exclude
            )
            if last.greeting:
                state.unclear = "greeting"
            elif not says_something and not turns[-1].strip():
                state.unclear = "empty"
        return state
