"""Facts about items from a knowledge base, joined to a catalog: who made a film, who is in it,
its language. A small LM cannot know these; a request that names a person ("a Truffaut film",
"something with Marlene Dietrich") can only be honoured when the catalog carries them.

The knowledge base is the Movie Dialog Dataset's ``movie_kb.txt`` (Dodge et al., "Evaluating
Prerequisite Qualities for Learning End-to-End Dialog Systems", ICLR 2016; CC BY 3.0): one fact a
line, ``<n> <title> <relation> <value>``, numbered from 1 for each film, a blank line between films::

    1 Kismet directed_by William Dieterle
    2 Kismet starred_actors Marlene Dietrich, Edward Arnold, Ronald Colman, James Craig
    3 Kismet release_year 1944

``join_facts`` adds the relations of ``FIELDS`` to an item's ``metadata`` as lists of names
(``{"director": ["William Dieterle"], "cast": [...]}``) when the film's normalized title and
release year match the item's (a year one off counts when the title names one film of the
knowledge base); metadata the item already has is kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from agent.catalog import IngestError, Item, normalize_title

# Knowledge-base relation -> the metadata field it becomes (a list of names each).
FIELDS = {"directed_by": "director", "written_by": "writer", "starred_actors": "cast", "in_language": "language"}
RELATIONS = (*FIELDS, "release_year", "has_genre", "has_tags", "has_imdb_rating", "has_imdb_votes")
_LINE = re.compile(rf"^(\d+) (.+?) ({'|'.join(RELATIONS)}) (.+)$")


@dataclass
class Film:
    """One film of the knowledge base: its title, release year (None when not given) and the
    values of each ``FIELDS`` relation, in the knowledge base's order."""

    title: str
    year: int | None = None
    facts: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class JoinReport:
    """What ``join_facts`` did: ``items`` in the catalog, ``matched`` items given facts,
    ``with_field``: field -> items that now have it, ``films``: films in the knowledge base."""

    items: int
    matched: int
    with_field: dict[str, int]
    films: int

    def summary(self) -> str:
        fields = ", ".join(f"{n} with a {name}" for name, n in self.with_field.items())
        return f"facts joined to {self.matched} of {self.items} items ({fields}) from {self.films} films"


def load_facts(path: Path | str) -> list[Film]:
    """Every film of a ``movie_kb.txt`` file (module docstring). Raises ``IngestError`` naming
    the line when a non-blank line is not ``<n> <title> <relation> <value>`` with a known
    relation, a release year is not a number, or the file is absent."""
    path = Path(path)
    if not path.is_file():
        raise IngestError(path, None, "no such file (expected a movie_kb.txt knowledge base)")
    films: list[Film] = []
    current: Film | None = None
    with path.open(encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if not line:
                current = None
                continue
            m = _LINE.match(line)
            if m is None:
                raise IngestError(path, n, f"expected '<n> <title> <relation> <value>', got {line[:80]!r}")
            number, title, relation, value = m.groups()
            if current is None or number == "1" or title != current.title:
                current = Film(title)
                films.append(current)
            if relation == "release_year":
                if not value.isdigit():
                    raise IngestError(path, n, f"release_year {value!r} is not a year")
                current.year = current.year or int(value)
            elif relation in FIELDS:
                names = [v.strip() for v in value.split(",") if v.strip()]
                have = current.facts.setdefault(FIELDS[relation], [])
                have += [v for v in names if v not in have]
    return films


class _FilmsByTitle:
    """Normalized title -> the films of that title."""

    def __init__(self, films: Iterable[Film]):
        self.by_title: dict[str, list[Film]] = {}
        for film in films:
            self.by_title.setdefault(normalize_title(film.title), []).append(film)

    def match(self, item: Item) -> Film | None:
        """The film of ``item``: same normalized title and year; else, when the title names one
        film and both years are known, that film if its year is one off (release and
        festival years differ). None otherwise: an ambiguous title is not guessed."""
        films = self.by_title.get(normalize_title(item.title), [])
        same = [f for f in films if f.year == item.year]
        if len(same) == 1:
            return same[0]
        if len(films) == 1 and None not in (films[0].year, item.year) and abs(films[0].year - item.year) == 1:
            return films[0]
        return None


def join_facts(items: Sequence[Item], films: Iterable[Film]) -> tuple[list[Item], JoinReport]:
    """``items`` with the facts of their knowledge-base film added to ``metadata`` (module
    docstring), in the same order, and what was joined. Items without a film come back unchanged;
    an item's own metadata wins over the knowledge base's."""
    films = list(films)
    index = _FilmsByTitle(films)
    out, matched, counts = [], 0, dict.fromkeys(FIELDS.values(), 0)
    for item in items:
        film = index.match(item)
        if film is None or not film.facts:
            out.append(item)
            continue
        matched += 1
        added = {name: list(values) for name, values in film.facts.items() if name not in (item.metadata or {})}
        for name in added:
            counts[name] += 1
        out.append(replace(item, metadata={**added, **(item.metadata or {})}))
    return out, JoinReport(len(items), matched, {k: v for k, v in counts.items() if v}, len(films))
