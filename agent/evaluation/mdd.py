"""The Movie Dialog Dataset's recommendation requests, mapped to a MovieLens catalog.

MDD (Dodge et al., "Evaluating Prerequisite Qualities for Learning End-to-End Dialog Systems",
ICLR 2016; CC BY 3.0) task 2 holds single-turn requests built from MovieLens ratings, one per
line: ``1 <request>\\t<film recommended>``, e.g. ``1 I liked Brazil, Heat, and Alien. Can you
suggest a film?\\tBlade Runner``. The films are named by title only (no year); ``movie_kb.txt``
beside them gives each title's ``release_year``, which is how a title is mapped to one catalog
item here.

The films a request names ("gold") are read from its fixed templates ("I liked A, B, and C.",
"A, B, and C are movies I really liked.", "I watched the films A, B, and C and loved them."),
split at commas where the parts are titles the dataset knows: the perfect-linking reference a
reader is measured against. Nothing here reads free text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.catalog import Item
from agent.pipeline.reader import normalize_title, title_aliases

TASK2 = "task2_recs_dev.txt"
TASK3 = "task3_qarecs_dev.txt"
KB = "movie_kb.txt"

# The title lists of task 2's request templates; the request sentence follows them.
_LISTS = [
    re.compile(r"^(?P<films>.+?) are (?:movies|films) I (?:really )?(?:liked|like|love|loved)\. "),
    re.compile(r"^I watched the films (?P<films>.+) and loved them\. "),
    re.compile(r"^I (?:really )?(?:liked|like|love|loved) (?P<films>.+)\. (?=[^.]*\?$)"),
]


# Task 3's first turn: the same lists, then "I'm looking for a <genre, tag, person> movie."
_LISTS3 = [re.compile(p.pattern.replace(r"(?=[^.]*\?$)", r"(?=I'm looking for )")) for p in _LISTS]
# Task 3's third turn names the person whose films the user wants next.
_PERSON = re.compile(r"^I (?:prefer|rate|like) (?P<person>.+?) movies(?: more)?\. ")


@dataclass(frozen=True)
class MddDialogue:
    """One task-3 dialogue: its user turns and the dataset's answers (usually three: a film, an
    answer about it, another film; some dialogues stop after two), the titles turn 1 names, and
    the person the third turn asks for (None without one)."""

    turns: tuple[str, ...]
    answers: tuple[str, ...]
    named: tuple[str, ...]
    person: str | None


@dataclass(frozen=True)
class MddRequest:
    """One task-2 request: its text, the titles it names (in order) and the film(s) the dataset
    recommends for it (usually one)."""

    text: str
    named: tuple[str, ...]
    targets: tuple[str, ...]


def release_years(kb: Path) -> dict[str, int]:
    """``movie_kb.txt`` -> normalized title -> release year (the first one given)."""
    years: dict[str, int] = {}
    for line in kb.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\d+ (.+?) release_year (\d{4})$", line)
        if m:
            years.setdefault(normalize_title(m[1]), int(m[2]))
    return years


def split_titles(text: str, known: set[str]) -> list[str]:
    """A list of titles (``"A, B, and C"``, ``"A and B"``) -> its titles, keeping commas and
    "and"s that are part of a known title ("The Good, the Bad and the Ugly", "Sense and
    Sensibility"): the split with the fewest parts that are not ``known`` normalized titles,
    then the fewest parts; an unknown part stays a part of its own."""
    parts = [p.strip() for p in text.split(", ")]

    def options(title: str, width: int) -> list[tuple[int, list[str]]]:
        bare = title.removeprefix("and ")
        if normalize_title(bare) in known:
            out = [(0, [bare])]
        else:  # an unknown title never spans a comma
            out = [(1, [bare])] if width == 1 else []
        for m in re.finditer(r" and ", bare if width == 1 else ""):  # "A and B" with no comma
            a, b = bare[: m.start()], bare[m.end() :]
            if normalize_title(a) in known and normalize_title(b) in known:
                out.append((0, [a, b]))
        return out

    # best[i]: (comma-separated parts left unknown, titles, the titles) for the first i parts
    best: list[tuple[int, int, list[str]]] = [(0, 0, [])]
    for i in range(1, len(parts) + 1):
        candidates = []
        for j in range(max(0, i - 4), i):
            u, n, titles = best[j]
            for miss, got in options(", ".join(parts[j:i]), i - j):
                candidates.append((u + miss, n + len(got), titles + got))
        best.append(min(candidates, key=lambda o: (o[0], o[1])))
    return best[-1][2]


def parse_task2(path: Path, known: set[str]) -> list[MddRequest]:
    """Every request of a task-2 file (``known``: the normalized titles of ``movie_kb.txt``, for
    ``split_titles``). Raises ``ValueError`` naming the line when one is not ``id text<TAB>answer``."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        head, tab, answer = line.partition("\t")
        if not tab or not re.match(r"\d+ ", head):
            raise ValueError(f"{path}:{n}: expected '<id> <request>\\t<film>', got {line[:80]!r}")
        text = head.split(" ", 1)[1]
        m = next((p.match(text) for p in _LISTS if p.match(text)), None)
        named = tuple(split_titles(m["films"], known)) if m else ()
        out.append(MddRequest(text, named, tuple(split_titles(answer, known))))
    return out


def parse_task3(path: Path, known: set[str]) -> list[MddDialogue]:
    """Every dialogue of a task-3 file: lines ``<n> text<TAB>answer``, ``n`` counting from 1 in
    each dialogue (a ``1`` or a blank line starts the next). Raises ``ValueError`` naming the line
    when one is malformed or a turn number skips."""
    blocks: list[list[tuple[str, str]]] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            if blocks and blocks[-1]:
                blocks.append([])
            continue
        head, tab, answer = line.partition("\t")
        number, _, text = head.partition(" ")
        if not tab or not number.isdigit():
            raise ValueError(f"{path}:{n}: expected '<n> <text>\\t<answer>', got {line[:80]!r}")
        if number == "1" and (not blocks or blocks[-1]):
            blocks.append([])
        if int(number) != len(blocks[-1]) + 1:
            raise ValueError(f"{path}:{n}: turn {number} follows turn {len(blocks[-1])}")
        blocks[-1].append((text, answer))
    out = []
    for block in (b for b in blocks if b):
        turns, answers = zip(*block)
        m = next((p.match(turns[0]) for p in _LISTS3 if p.match(turns[0])), None)
        person = _PERSON.match(turns[2]) if len(turns) >= 3 else None
        named = tuple(split_titles(m["films"], known)) if m else ()
        out.append(MddDialogue(turns, answers, named, person["person"] if person else None))
    return out


class CatalogTitles:
    """A title without a year -> one catalog item: the item of that normalized title (or another
    name) whose year is the title's ``release_years`` entry, else the only item of that name, else
    none (an ambiguous title is not guessed)."""

    def __init__(self, items: Iterable[Item], years: dict[str, int]):
        self.years = years
        self.by_title: dict[str, list[Item]] = {}
        self.aliases: dict[str, list[Item]] = {}
        for it in items:
            self.by_title.setdefault(normalize_title(it.title), []).append(it)
            for alias in title_aliases(it.title):
                self.aliases.setdefault(alias, []).append(it)

    def item_id(self, title: str) -> str | None:
        """The catalog id of ``title`` (the dataset's spelling); another name of a catalog title
        (``title_aliases``: "Raiders of the Lost Ark (Indiana Jones and ...)") counts."""
        key = normalize_title(title)
        films = self.by_title.get(key) or self.aliases.get(key, [])
        dated = [f for f in films if f.year is not None and f.year == self.years.get(key)]
        if len(dated) == 1:
            return dated[0].id
        return films[0].id if len(films) == 1 else None

    def ids(self, titles: Sequence[str]) -> list[str]:
        return [i for i in dict.fromkeys(self.item_id(t) for t in titles) if i is not None]
