"""The catalog's vocabulary (categories, metadata values, people, titles) and title linking:
named films found in a message, tolerant of case, punctuation, years, leading articles and
small typos (rapidfuzz), and the title-like spans that match no item."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence

from agent.catalog import Item, bare_title, normalize_title
from agent.pipeline.people import PeopleLinker
from agent.pipeline.reader.filler import _EDGE, ASKING, FILLER
from agent.pipeline.reader.lexicon import _SENTENCE, CATEGORY_WORDS, VALUE_WORDS
from agent.pipeline.reader.state import Constraints


class Vocabulary:
    """What the catalog lets a request constrain, read at load: its categories, its metadata
    fields (text fields with few values; list fields of words, such as languages; numeric
    fields), its people fields (list fields of names: ``PeopleLinker``), its newest year, and its
    titles (``TitleLinker``)."""

    MAX_VALUES = 30  # a text field with more distinct values is free text, not a constraint
    NAMES = 0.8  # a list field whose entries are mostly (this share) two words or more holds names

    def __init__(self, items: Iterable[Item], popularity: Sequence[str] = ()):
        items = list(items)
        self.categories = sorted({c for it in items for c in it.categories})
        values: dict[str, set] = {}
        lists: dict[str, set] = {}
        for it in items:
            for name, value in (it.metadata or {}).items():
                if isinstance(value, list):
                    lists.setdefault(name, set()).update(str(v) for v in value)
                else:
                    values.setdefault(name, set()).add(value)
        self.text_fields = {
            name: {str(v) for v in vs}
            for name, vs in values.items()
            if name not in lists and all(isinstance(v, str) for v in vs) and len(vs) <= self.MAX_VALUES
        }
        names = {name for name, vs in lists.items() if sum(len(v.split()) >= 2 for v in vs) >= self.NAMES * len(vs)}
        self.text_fields |= {name: vs for name, vs in lists.items() if name not in names}
        self.people_fields = sorted(names)
        stop = ASKING | set(CATEGORY_WORDS) | set(VALUE_WORDS) | {c.lower() for c in self.categories}
        stop |= {v.lower() for vs in self.text_fields.values() for v in vs}  # "a French film" is a language
        self.people = PeopleLinker(items, self.people_fields, stop)
        self.numeric_fields = [
            name
            for name, vs in values.items()
            if vs and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vs)
        ]
        years = [it.year for it in items if it.year]
        self.newest_year = max(years) if years else None
        self.titles = TitleLinker(items, popularity)

    def items_for(self, c: Constraints) -> list[str] | None:
        """The only items ``c``'s people constraints admit (sorted ids), or None when it has none:
        retrieval's allow-list, so the films of a person are found in a catalog of any size."""
        if not c.people:
            return None
        sets = [self.people.items_of(person, fields) for person, fields in c.people.items()]
        return sorted(set.intersection(*sets))

    def field_of(self, hint: str, value: str) -> str | None:
        """The catalog field that holds ``value`` (the field named ``hint`` first), else None."""
        if value in self.text_fields.get(hint, ()):
            return hint
        return next((name for name, vs in self.text_fields.items() if value in vs), None)

    def runtime_field(self) -> str | None:
        return next((n for n in self.numeric_fields if re.match(r"(runtime|length|duration|minutes)", n)), None)

    def add(self, items: Iterable[Item]) -> None:
        """Learn new items (an upsert while serving)."""
        items = list(items)
        self.categories = sorted(set(self.categories) | {c for it in items for c in it.categories})
        for it in items:
            for name, value in (it.metadata or {}).items():
                if name in self.text_fields and isinstance(value, (str, list)):
                    self.text_fields[name].update([value] if isinstance(value, str) else map(str, value))
        self.people.add(items)
        self.titles.add(items)


# A verb right before a lower-case "the <word>" that makes it a film ("loved the godfather").
_CUED = re.compile(r"\b(?:lov|lik|enjoy|ador|hat|watch|saw|seen)\w*\s+$", re.IGNORECASE)

YEAR_AFTER = re.compile(r"\s*\(?((?:18|19|20)\d\d)\)?")  # "Alien (1979)", "Alien 1979": the year picks

_NUMBERED = re.compile(r"\s*(?:part|vol|volume|chapter|episode|book|no)\b", re.IGNORECASE)


def title_aliases(title: str) -> list[str]:
    """Other names people use for a catalog title, normalized: the alternative title in brackets
    and the title without it ("Raiders of the Lost Ark (Indiana Jones and the Raiders of the
    Lost Ark)"), and either side of a colon ("Wallace & Gromit: The Wrong Trousers", "Kill Bill:
    Vol. 1"), each of two words or more."""
    bare = bare_title(title)
    names = re.findall(r"\(([^()]+)\)", bare)
    main = re.sub(r"\s*\([^()]*\)", "", bare).strip()
    names.append(main)
    article = re.match(r"^(.*), (the|a|an)$", main, re.IGNORECASE)
    core = f"{article[2]} {article[1]}" if article else main
    if ":" in core:
        names += [part for part in core.split(":", 1) if not _NUMBERED.match(part)]
    keys = [normalize_title(n) for n in names]
    own = normalize_title(title)
    return [k for k in dict.fromkeys(keys) if k and k != own and len(k.split()) >= 2]


def leading_article(title: str) -> str | None:
    """The article a title opens with, as typed or as a catalog writes it at the end: "The
    Arrival" and "Arrival, The (1996)" -> "the"; "Arrival (2016)" -> None."""
    bare = bare_title(title)
    found = re.match(r"(the|a|an)\s", bare, re.IGNORECASE) or re.search(r",\s*(the|a|an)$", bare, re.IGNORECASE)
    return found[1].lower() if found else None


class TitleLinker:
    """Films named in a message -> catalog ids: an exact match of the normalized words
    (``normalize_title``) first, longest span first, then of another name of a title
    (``title_aliases``: a bracketed alternative, either side of a colon), then a fuzzy match
    (rapidfuzz ``fuzz.ratio`` at least ``FUZZY_CUTOFF`` against titles and other names of
    about the span's length) for spans of two or more words or of one capitalized word
    ("Barveheart"), eight letters or more; a fuzzy span may take over shorter exact matches of
    other films inside it ("Harry Potter and the Chamber of Scerets" is not "The Chamber",
    "Taxi Drvier" is not "Taxi"). A one-word title must be capitalized or quoted in the message
    ("I loved Alien", not "something for my kids"), or a part of a list of films ("Carrington,
    Kids, and Short Cuts"). Among films of one name, a year next to it
    picks; else the one whose leading article is the one typed ("The Arrival" is "Arrival, The
    (1996)", "Arrival" is "Arrival (2016)"); else the most popular."""

    FUZZY_CUTOFF = 90
    MAX_WORDS = 12

    def __init__(self, items: Iterable[Item], popularity: Sequence[str] = ()):
        self.rank = {i: n for n, i in enumerate(popularity)}
        self.by_title: dict[str, list[Item]] = {}
        self.aliases: dict[str, list[Item]] = {}
        self.by_length: dict[int, list[str]] = {}
        self.add(items)

    def add(self, items: Iterable[Item]) -> None:
        for it in items:
            key = normalize_title(it.title)
            if not key:
                continue
            if key not in self.by_title and key not in self.aliases:
                self.by_length.setdefault(len(key), []).append(key)
            self.by_title.setdefault(key, [])
            self.by_title[key] = [x for x in self.by_title[key] if x.id != it.id] + [it]
            for alias in title_aliases(it.title):
                if alias not in self.by_title and alias not in self.aliases:
                    self.by_length.setdefault(len(alias), []).append(alias)  # fuzzy matches reach aliases too
                self.aliases[alias] = [x for x in self.aliases.get(alias, []) if x.id != it.id] + [it]

    def films(self, key: str) -> list[Item]:
        """The items named ``key`` (a normalized span): by title, else by another name."""
        return self.by_title.get(key) or self.aliases.get(key, [])

    def _choose(self, key: str, year: int | None, typed: str = "") -> Item:
        films = self.films(key)
        if year is not None:
            dated = [f for f in films if f.year == year]
            if dated:
                return dated[0]
        article = leading_article(typed)
        same = [f for f in films if leading_article(f.title) == article]
        return min(same or films, key=lambda f: (self.rank.get(f.id, len(self.rank)), f.id))

    def _fuzzy(self, span: str) -> str | None:
        from rapidfuzz import fuzz, process

        pool = [t for n in range(int(len(span) * 0.85), int(len(span) * 1.15) + 2) for t in self.by_length.get(n, ())]
        hit = process.extractOne(span, pool, scorer=fuzz.ratio, score_cutoff=self.FUZZY_CUTOFF) if pool else None
        if hit is None or re.findall(r"\d+", hit[0]) != re.findall(r"\d+", span):
            return None  # a typo is no other number: "less than 100" is not "Less Than Zero"
        return hit[0]

    def find(self, text: str) -> list[tuple[Item, int, int]]:
        """(item, start, end) of each film named in ``text``, in order; spans do not overlap."""
        tokens = [(m.group(), m.start(), m.end()) for m in re.finditer(r"[\w'’&-]+", text)]
        taken = [False] * len(tokens)
        found = []
        for fuzzy in (False, True):  # every exact match first: "X and" must not fuzzily swallow "and"
            self._scan(text, tokens, taken, found, fuzzy)
        found.sort(key=lambda f: f[1])
        return sorted(found + self._list_members(text, found), key=lambda f: f[1])

    def _list_members(self, text: str, found: list[tuple[Item, int, int]]) -> list[tuple[Item, int, int]]:
        """Parts of a list of films (``unknown_titles``) that are exactly a catalog title the
        scan passed over because its words are request words: "Carrington, Kids, and Short
        Cuts" names the film Kids, "something for my kids" does not."""
        masked = list(text)
        for _, start, end in found:
            masked[start:end] = "x" * (end - start)
        out = []
        for start, end in unknown_titles("".join(masked), found):
            key = normalize_title(text[start:end])
            if self.films(key):
                year = YEAR_AFTER.match(text, end)
                out.append((self._choose(key, int(year[1]) if year else None, text[start:end]), start, end))
        return out

    def _scan(self, text: str, tokens: list, taken: list, found: list, fuzzy: bool) -> None:
        for length in range(min(self.MAX_WORDS, len(tokens)), 0, -1):
            for s in range(len(tokens) - length + 1):
                inside = [f for f in found if tokens[s][1] <= f[1] and f[2] <= tokens[s + length - 1][2]]
                if any(taken[s : s + length]):
                    # only a fuzzy span may take over, and only shorter exact matches wholly inside it
                    # ("Taxi Drvier" is not "Taxi")
                    covered = sum(taken[s : s + length])
                    spans = sum(len(re.findall(r"[\w'’&-]+", text[f[1] : f[2]])) for f in inside)
                    if not fuzzy or length < 2 or covered != spans or spans > length - 1:
                        continue
                words = tokens[s : s + length]
                start, end = words[0][1], words[-1][2]
                if not self._plausible(text, words, start, end, exact=not fuzzy):
                    continue
                if (
                    words[-1][0].lower() in ("the", "a", "an")
                    and re.search(r",\s*\w+$", text[start:end])
                    and re.match(r"\s+[A-Z0-9]", text[end:])
                ):
                    continue  # "Grumpier Old Men, A Family Thing": the article opens the next title
                if fuzzy and (words[0][0].lower() in _EDGE or words[-1][0].lower() in _EDGE):
                    continue  # a fuzzy span does not start or end on a request word ("I saw X", "of X. A")
                key = normalize_title(text[start:end])
                if not key:
                    continue
                if fuzzy and not self.films(key) and (length >= 2 or words[0][0][:1].isupper()) and len(key) >= 8:
                    key = self._fuzzy(key) or key
                elif fuzzy and any(taken[s : s + length]):
                    continue  # an exact match over exact matches is not a takeover
                if not self.films(key):
                    continue
                if any(taken[s : s + length]):
                    if all(f[0].id == self._choose(key, None, text[start:end]).id for f in inside):
                        continue  # the same film, only a longer span ("Kill Bill. A" is "Kill Bill")
                    for f in inside:
                        found.remove(f)
                year = YEAR_AFTER.match(text, end)
                found.append((self._choose(key, int(year[1]) if year else None, text[start:end]), start, end))
                taken[s : s + length] = [True] * length

    @staticmethod
    def _plausible(text: str, words: list, start: int, end: int, exact: bool = True) -> bool:
        """A span can be a title when it holds a capitalized word that is not the sentence's
        first, or it is quoted, or it is two words or more with one capital, or (matched
        exactly, people type titles in lower case) three words or more, or two of which two are
        not request words (three, matched fuzzily), or "the" and a word of six letters or more
        right after a verb of liking or watching ("I enjoyed the godfather"); and it is not made
        of request words alone."""
        content = [w for w, *_ in words if w.lower() not in FILLER and w.lower() not in CATEGORY_WORDS]
        if not content:
            return False
        quoted = text[max(0, start - 1) : start] in "\"'“‘" and text[end : end + 1] in "\"'”’"
        if quoted and start > 0:
            return True
        capitals = [w for w, s, _ in words if w[:1].isupper() and w.lower() not in ("i", "i'm", "i've", "i'd")]
        if not capitals:  # fuzzily only when three words are not request words ("lost lugage lovers")
            if exact and len(words) >= 3:
                return True  # "good will hunting"
            if exact and len(words) == 2 and words[0][0].lower() == "the" and len(content[0]) >= 6:
                return _CUED.search(text[:start]) is not None  # "I enjoyed the godfather"
            return len(words) >= 2 and len(content) >= (2 if exact else 3)
        sentence_start = start == 0 or re.search(r"[.!?]\s*$", text[:start]) is not None
        if len(words) == 1:
            return (
                not sentence_start
                or text[end : end + 1] in (",",)
                or bool(re.match(r"\s*\(\d{4}\)|\s+(?:was|is|were)\s+(?:so\s+|really\s+|very\s+)?\w+", text[end:]))
            )
        return True


def title_end(text: str, item: Item, end: int) -> int:
    """Where the film ``item`` found at ``text[..end]`` ends: past the period, question or
    exclamation mark that closes its catalog title ("Monsters, Inc.", "O Brother, Where Art
    Thou?"), so that it is not read as the end of a sentence."""
    bare = re.sub(r"\s*\(\d{4}\)\s*$", "", item.title.strip())
    return end + 1 if bare[-1:] in (".", "?", "!") and text[end : end + 1] == bare[-1:] else end


_SMALL_WORDS = {"of", "the", "a", "an", "and", "in", "on", "to", "with", "for", "at", "from", "by"}
_LIST_SEPARATOR = re.compile(r",\s*(?:and\s+)?|\s+and\s+")


def unknown_titles(masked: str, found: Sequence[tuple[Item, int, int]]) -> list[tuple[int, int]]:
    """Spans of a list of films that name none the catalog has: in a sentence listing two films
    or more ("I liked A, B, and C."), each other part of the list that starts with a capital and
    is at most eight words ("Carrie, Slaughterhouse-Five, Cabaret"). ``masked``: the message with
    the films found blanked out (``found``: their spans). They are said in the reply and kept out
    of the query, whose words they are not."""
    out = []
    bounds = [0] + [m.end() for m in _SENTENCE.finditer(masked)] + [len(masked)]
    for lo, hi in itertools.pairwise(bounds):
        inside = [(a, b) for _, a, b in found if lo <= a < hi]
        if len(inside) < 2:
            continue
        first, last = inside[0][0], inside[-1][1]
        cuts = [lo] + [x for m in _LIST_SEPARATOR.finditer(masked, lo, hi) for x in (m.start(), m.end())] + [hi]
        for a, b in zip(cuts[::2], cuts[1::2]):
            part = masked[a:b]
            a, b = a + len(part) - len(part.lstrip()), b - len(part) + len(part.rstrip(" .!?;:"))
            words = masked[a:b].split()
            title_case = all(w[:1].isupper() or w in _SMALL_WORDS for w in words)
            if (
                first <= a
                and (b <= last or title_case)  # between the list's first and last film, or after it in title case
                and words
                and len(words) <= 8
                and masked[a].isupper()
                and "x" * (b - a) != masked[a:b]
                and not any(x <= a < y or x < b <= y for x, y in inside)
            ):
                out.append((a, b))
    return out
