"""What the reader produces: a named film (``Mention``), hard ``Constraints``, one turn's reading
(``_Turn``) and the conversation's ``RequestState``; how a turn folds into the state (later
turns override earlier ones) and how another reader's groups replace the rules' (``merge_turn``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any

from agent.catalog import Item


@dataclass(frozen=True)
class Mention:
    """A film the user named: its catalog id, the words they used, and how they feel about it."""

    item_id: str
    title: str
    words: str
    sentiment: str  # one of SENTIMENTS


@dataclass
class Constraints:
    """Hard constraints on the picks. ``values``: metadata field -> allowed values;
    ``excluded_values``: field -> forbidden values; ``ranges``: numeric field -> (low, high), either
    None. Categories: any of ``categories``, none of ``excluded_categories``. A list-valued field
    (``agent.knowledge``: language, people) admits an item when it lists any allowed value.
    ``people``: person -> the people fields to find them in; every person must be credited in one
    of theirs; ``excluded_people``: no item credits any of them there."""

    categories: list[str] = field(default_factory=list)
    excluded_categories: list[str] = field(default_factory=list)
    year_min: int | None = None
    year_max: int | None = None
    values: dict[str, list[str]] = field(default_factory=dict)
    excluded_values: dict[str, list[str]] = field(default_factory=dict)
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    people: dict[str, tuple[str, ...]] = field(default_factory=dict)
    excluded_people: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def empty(self) -> bool:
        """Whether nothing is constrained."""
        return not (
            self.categories
            or self.excluded_categories
            or self.year_min is not None
            or self.year_max is not None
            or self.values
            or self.excluded_values
            or self.ranges
            or self.people
            or self.excluded_people
        )

    def needs_items(self) -> bool:
        """Whether a constraint is checked on items after retrieval (not a Chroma filter)."""
        return bool(
            self.excluded_categories
            or self.values
            or self.excluded_values
            or self.ranges
            or self.people
            or self.excluded_people
        )

    def admits(self, item: Item) -> bool:
        """Whether ``item`` meets every constraint that ``needs_items`` covers (categories and
        years are also Chroma filters, checked here too)."""
        cats = set(item.categories)
        if self.categories and not cats & set(self.categories):
            return False
        if cats & set(self.excluded_categories):
            return False
        if item.year is not None:
            if self.year_min is not None and item.year < self.year_min:
                return False
            if self.year_max is not None and item.year > self.year_max:
                return False
        return self._admits_metadata(item.metadata or {})

    def _admits_metadata(self, meta: dict[str, Any]) -> bool:
        if not all(_listed(meta.get(name), allowed) for name, allowed in self.values.items()):
            return False
        if any(_listed(meta.get(name), banned) for name, banned in self.excluded_values.items()):
            return False
        credited = [any(_listed(meta.get(f), (p,)) for f in fields) for p, fields in self.people.items()]
        if not all(credited) or any(
            _listed(meta.get(f), (p,)) for p, fields in self.excluded_people.items() for f in fields
        ):
            return False
        for name, (low, high) in self.ranges.items():
            value = meta.get(name)
            if not isinstance(value, (int, float)):
                return False
            if (low is not None and value < low) or (high is not None and value > high):
                return False
        return True

    def summary(self) -> list[str]:
        """The constraints in words, for the reply ("no Horror", "kind: series", "runtime_min at most 90")."""
        out = []
        if self.categories:
            out.append(" or ".join(self.categories))
        out += [f"no {c}" for c in self.excluded_categories]
        if self.year_min is not None and self.year_max is not None:
            out.append(f"{self.year_min}-{self.year_max}" if self.year_min != self.year_max else f"{self.year_min}")
        elif self.year_min is not None:
            out.append(f"from {self.year_min} on")
        elif self.year_max is not None:
            out.append(f"up to {self.year_max}")
        out += [f"{name}: {' or '.join(v)}" for name, v in self.values.items()]
        out += [f"{name}: not {' or '.join(v)}" for name, v in self.excluded_values.items()]
        out += [f"{_credit(fields)} {person}" for person, fields in self.people.items()]
        out += [f"not {_credit(fields)} {person}" for person, fields in self.excluded_people.items()]
        for name, (low, high) in self.ranges.items():
            if low is not None:
                out.append(f"{name} at least {low:g}")
            if high is not None:
                out.append(f"{name} at most {high:g}")
        return out


def _listed(value: Any, allowed: Sequence[str]) -> bool:
    """Whether a metadata value is one of ``allowed``: a list when any of its entries is."""
    if isinstance(value, list):
        return any(str(v) in allowed for v in value)
    return str(value) in allowed


CREDITS = {"director": "directed by", "writer": "written by", "cast": "with"}


def _credit(fields: Sequence[str]) -> str:
    """How a person constraint reads: "directed by", "with", or "by or with" for several fields."""
    return CREDITS.get(fields[0], f"{fields[0]}:") if len(fields) == 1 else "by or with"


@dataclass
class RequestState:
    """What a conversation asks for, read from every user turn (newest wins).

    - ``mentions``: films named, one per item id (newest sentiment);
    - ``pointed_like`` / ``pointed_exclude``: earlier picks the user pointed at;
    - ``constraints``: hard filters; ``preferences``: soft ones, asked for with a ``SOFT`` cue
      ("ideally from the 90s"), which re-weight the candidates instead of filtering them;
      ``count``: how many picks they asked for (None: not said);
    - ``comparisons``: comparatives read, in words ("darker than "Lost Luggage Lovers"");
    - ``unsupported``: what the catalog cannot honour, in words; ``unclear``: "greeting" or
      "empty" when the newest turn asks for nothing; ``query``: the words left for the content
      space (None when nothing is left)."""

    mentions: list[Mention] = field(default_factory=list)
    pointed_like: list[str] = field(default_factory=list)
    pointed_exclude: list[str] = field(default_factory=list)
    constraints: Constraints = field(default_factory=Constraints)
    preferences: Constraints = field(default_factory=Constraints)
    count: int | None = None
    comparisons: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    unclear: str | None = None
    query: str | None = None

    def ids(self, *sentiments: str) -> list[str]:
        return [m.item_id for m in self.mentions if m.sentiment in sentiments]

    @property
    def seeds(self) -> list[str]:
        """Items that act as the session's history: named likes and references, then pointers."""
        return list(dict.fromkeys(self.ids("liked", "mentioned") + self.pointed_like))

    @property
    def excluded(self) -> list[str]:
        """Items never to show: named dislikes, films they saw, pointers they turned down."""
        return list(dict.fromkeys(self.ids("disliked", "seen") + self.pointed_exclude))


@dataclass
class _Turn(Constraints):
    """What one user turn says on its own: its constraints, and the rest."""

    mentions: list[Mention] = field(default_factory=list)
    count: int | None = None
    comparisons: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    query: str = ""
    greeting: bool = False
    preferences: Constraints = field(default_factory=Constraints)


# What another reading of a turn (``agent.pipeline.llm_reader``) may replace, field group ->
# the ``_Turn`` attributes it covers. People, pointers, comparatives, what cannot be honoured
# and the query words are always the rules'.
READ_GROUPS = {
    "mentions": ("mentions",),
    "categories": ("categories", "excluded_categories"),
    "years": ("year_min", "year_max"),
    "values": ("values", "excluded_values"),
    "ranges": ("ranges",),
    "count": ("count",),
    "greeting": ("greeting",),
}
_CONSTRAINT_GROUPS = ("categories", "years", "values", "ranges")


def merge_turn(rules: _Turn, other: _Turn, groups: Iterable[str]) -> _Turn:
    """``rules`` with the attributes of each of ``groups`` (``READ_GROUPS`` keys) taken from
    ``other``. A turn whose rules read a comparative ("darker", "newer") keeps the rules'
    constraints: a comparative is read against the earlier picks, which ``other`` never saw.
    Raises ``KeyError`` for a group ``READ_GROUPS`` lacks."""
    out = _Turn(**{f.name: getattr(rules, f.name) for f in dataclass_fields(_Turn)})
    for group in groups:
        if rules.comparisons and group in _CONSTRAINT_GROUPS:
            continue
        for name in READ_GROUPS[group]:
            setattr(out, name, getattr(other, name))
    return out


def _fold(c: Constraints, turn: _Turn) -> None:
    """Fold one turn's hard constraints into the conversation's ``c``: a turn that names
    categories, values or people replaces them, an exclusion adds up and undoes a wish for the
    same, years and ranges the turn sets override, a contradiction leaves the newest."""
    if turn.categories:
        c.categories = list(turn.categories)
    c.excluded_categories = [x for x in c.excluded_categories if x not in turn.categories]
    c.excluded_categories += [x for x in turn.excluded_categories if x not in c.excluded_categories]
    c.categories = [x for x in c.categories if x not in c.excluded_categories]
    c.year_min = turn.year_min if turn.year_min is not None else c.year_min
    c.year_max = turn.year_max if turn.year_max is not None else c.year_max
    if c.year_min is not None and c.year_max is not None and c.year_min > c.year_max:
        c.year_min, c.year_max = turn.year_min, turn.year_max  # the turns disagree: the newest wins
    for name, vals in turn.values.items():
        c.values[name] = list(vals)
        if name in c.excluded_values:
            c.excluded_values[name] = [x for x in c.excluded_values[name] if x not in vals]
    for name, vals in turn.excluded_values.items():
        c.excluded_values.setdefault(name, [])
        c.excluded_values[name] += [x for x in vals if x not in c.excluded_values[name]]
        if name in c.values:
            c.values[name] = [x for x in c.values[name] if x not in vals] or c.values.pop(name) and []
    c.values = {k: v for k, v in c.values.items() if v}
    c.excluded_values = {k: v for k, v in c.excluded_values.items() if v}
    c.ranges.update(turn.ranges)
    if turn.people:  # the newest turn that names people says whose films
        c.people = dict(turn.people)
    c.people = {p: f for p, f in c.people.items() if p not in turn.excluded_people}
    c.excluded_people = {p: f for p, f in c.excluded_people.items() if p not in turn.people}
    c.excluded_people.update(turn.excluded_people)


def as_dict(state: RequestState) -> dict[str, Any]:
    """The state as plain JSON-able data (the API's ``muse.request``)."""
    c = state.constraints
    return {
        "mentions": [
            {"item_id": m.item_id, "title": m.title, "words": m.words, "sentiment": m.sentiment}
            for m in state.mentions
        ],
        "pointed_like": list(state.pointed_like),
        "pointed_exclude": list(state.pointed_exclude),
        "categories": list(c.categories),
        "excluded_categories": list(c.excluded_categories),
        "year_min": c.year_min,
        "year_max": c.year_max,
        "values": {k: list(v) for k, v in c.values.items()},
        "excluded_values": {k: list(v) for k, v in c.excluded_values.items()},
        "ranges": {k: list(v) for k, v in c.ranges.items()},
        "people": {k: list(v) for k, v in c.people.items()},
        "excluded_people": {k: list(v) for k, v in c.excluded_people.items()},
        "preferences": state.preferences.summary(),
        "count": state.count,
        "comparisons": list(state.comparisons),
        "unsupported": list(state.unsupported),
        "unclear": state.unclear,
        "query": state.query,
    }
