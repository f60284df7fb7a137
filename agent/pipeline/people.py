"""People named in a message -> the catalog's credits: "a Truffaut film", "something with Marlene
Dietrich", "I prefer Barry Levinson movies", "nothing starring Adam Sandler".

The names come from the catalog's people fields, read at load: metadata fields whose values are
lists of names (``agent.knowledge`` joins ``director``, ``writer`` and ``cast`` from a knowledge
base). A name is found in a message

- whole (two words or more), case, accents and punctuation aside ("francois truffaut"), or
  fuzzily when capitalized (rapidfuzz ``fuzz.ratio`` at least ``FUZZY_CUTOFF``: "Marlene
  Deitrich");
- by surname alone ("Truffaut") only next to a cue ("by", "with", "starring", "a ... film", "'s
  movies") and only when one person of that surname holds most of its credits (``DOMINANT``
  times the next one's).

A cue also says which field is meant: "directed by" the director, "written by" the writer,
"starring", "featuring" or "with" the cast; a person the catalog never lists in that field is
looked for in every people field instead. No cue: every people field.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.catalog import Item

# The cue before a name -> the field it points at (None: any people field), longest first.
CUES_BEFORE = {
    "directed by": "director",
    "a film by": "director",
    "a movie by": "director",
    "films by": "director",
    "movies by": "director",
    "by director": "director",
    "the director": "director",
    "written by": "writer",
    "screenplay by": "writer",
    "starring": "cast",
    "featuring": "cast",
    "with actor": "cast",
    "with actress": "cast",
    "the actor": "cast",
    "the actress": "cast",
    "with": "cast",
    "by": "director",
}
# Each cue as matched at the end of the words before a name, an article allowed after it.
_CUES = [
    (re.compile(rf"\b{re.escape(cue)}(?:\s+(?:a|an|the|some))?$", re.IGNORECASE), name)
    for cue, name in CUES_BEFORE.items()
]
_AFTER = re.compile(r"(?:['’]s?)?\s+(?:films?|movies?|pictures?|ones)\b|['’]s\b", re.IGNORECASE)
_TOKEN = re.compile(r"[\w.-]+(?:['’](?!s\b)\w+)*")


def fold(name: str) -> str:
    """A name as compared: accents, case and punctuation gone, spaces collapsed.
    ``"François Truffaut"`` -> ``"francois truffaut"``; ``"Dan O'Bannon"`` -> ``"dan obannon"``."""
    bare = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    bare = re.sub(r"['’.]", "", bare.lower())
    return " ".join(re.sub(r"[^\w\s]", " ", bare).split())


@dataclass(frozen=True)
class Person:
    """A person found in a message: the catalog's spelling, the span in the message, the field
    the words point at (None: any people field), whether a cue stood next to the name, and where
    the cue before it starts (``start`` when there is none)."""

    name: str
    start: int
    end: int
    field: str | None
    cued: bool
    cue_start: int


class PeopleLinker:
    """Names of the catalog's people fields, found in a message (module docstring).
    ``fields``: the people fields; ``stopwords``: words that are never a name on their own
    (request words, category words). ``items_of(name, fields)``: the ids of items that list them."""

    FUZZY_CUTOFF = 90
    MAX_WORDS = 4
    DOMINANT = 3  # a surname alone names its most-credited person when they have 3x the next one's credits

    def __init__(self, items: Iterable[Item], fields: Sequence[str], stopwords: Iterable[str] = ()):
        self.fields = tuple(fields)
        self.stopwords = {w.lower() for w in stopwords}
        self.credits: dict[str, dict[str, set[str]]] = {}  # name -> field -> item ids
        self.by_key: dict[str, str] = {}
        self.by_surname: dict[str, str] = {}
        self.by_length: dict[int, list[str]] = {}
        self.add(items)

    def __bool__(self) -> bool:
        return bool(self.credits)

    def add(self, items: Iterable[Item]) -> None:
        """Learn the credits of ``items`` (at load, and on an upsert while serving)."""
        for it in items:
            for name in self.fields:
                for person in (it.metadata or {}).get(name) or ():
                    if isinstance(person, str) and fold(person):
                        self.credits.setdefault(person, {}).setdefault(name, set()).add(it.id)
        films = Counter({p: len(set().union(*f.values())) for p, f in self.credits.items()})
        self.by_key, surnames = {}, {}
        for person, _ in films.most_common():  # on a folded clash, the most-credited spelling
            key = fold(person)
            self.by_key.setdefault(key, person)
            if len(key.split()) >= 2:
                surnames.setdefault(key.split()[-1], []).append(person)
        self.by_surname = {
            s: people[0]
            for s, people in surnames.items()
            if s not in self.stopwords
            and len(s) >= 3
            and (len(people) == 1 or films[people[0]] >= self.DOMINANT * films[people[1]])
        }
        self.by_length = {}
        for key in self.by_key:
            if len(key.split()) >= 2:
                self.by_length.setdefault(len(key), []).append(key)

    def fields_of(self, person: str, wanted: str | None) -> tuple[str, ...]:
        """The fields to look for ``person`` in: ``wanted`` when the catalog lists them there,
        else every field that lists them."""
        listed = tuple(f for f in self.fields if f in self.credits.get(person, {}))
        return (wanted,) if wanted in listed else listed

    def items_of(self, person: str, fields: Sequence[str]) -> set[str]:
        """Ids of the items that list ``person`` in any of ``fields``."""
        credits = self.credits.get(person, {})
        return set().union(*(credits.get(f, set()) for f in fields))

    def find(self, text: str) -> list[Person]:
        """Each person named in ``text``, in order, longest span first; spans do not overlap."""
        if not self.credits:
            return []
        tokens = [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]
        taken = [False] * len(tokens)
        found: list[Person] = []
        for length in range(min(self.MAX_WORDS, len(tokens)), 0, -1):
            for s in range(len(tokens) - length + 1):
                if any(taken[s : s + length]):
                    continue
                words = tokens[s : s + length]
                start, end = words[0][1], words[-1][2]
                person = self._person(text, words, start, end)
                if person is not None:
                    found.append(person)
                    taken[s : s + length] = [True] * length
        return sorted(found, key=lambda p: p.start)

    @staticmethod
    def _cue(text: str, start: int, end: int) -> tuple[bool, str | None, int]:
        """(cued, the field the cue points at, where the cue before the name starts)."""
        before = text[:start].rstrip()
        for pattern, name in _CUES:  # in CUES_BEFORE's order: the first that matches
            if m := pattern.search(before):
                return True, name, m.start()
        if _AFTER.match(text, end):  # "Barry Levinson movies", "a Truffaut film", "Kubrick's"
            return True, None, start
        return False, None, start

    def _person(self, text: str, words: list, start: int, end: int) -> Person | None:
        key = fold(text[start:end])
        if not key or all(w[0].lower() in self.stopwords for w in words):
            return None
        if len(words) >= 2:  # a whole name, else a fuzzy one when capitalized
            name = self.by_key.get(key)
            if name is None and all(w[0][:1].isupper() for w in words) and len(key) >= 8:
                name = self._fuzzy(key)
        else:  # a capitalized surname, taken only next to a cue
            name = self.by_surname.get(key) if words[0][0][:1].isupper() else None
        if name is None:
            return None
        cued, wanted, cue_start = self._cue(text, start, end)  # only for a name found: spans are many
        if len(words) == 1 and not cued:
            return None
        return Person(name, start, end, wanted, cued, cue_start)

    def _fuzzy(self, key: str) -> str | None:
        from rapidfuzz import fuzz, process

        pool = [k for n in range(int(len(key) * 0.9), int(len(key) * 1.1) + 2) for k in self.by_length.get(n, ())]
        hit = process.extractOne(key, pool, scorer=fuzz.ratio, score_cutoff=self.FUZZY_CUTOFF) if pool else None
        return self.by_key[hit[0]] if hit else None
