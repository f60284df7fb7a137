"""The conversation reader: a chat's user turns -> one typed ``RequestState``, kept across turns.

What it reads, each rule once, in the order they apply to a turn:

1. pointers at earlier picks ("more like the second one", "not that one"; ``agent.pipeline.chat``
   keeps the reply format they point into);
2. films the user names, linked to catalog ids (``TitleLinker``: case, punctuation, a missing or
   extra year, leading articles, "Thing, The", small typos), with a sentiment each: liked,
   disliked, seen, or just mentioned ("something like X");
3. era words ("not too old", "recent", "classic"), years and decades (``agent.pipeline.intent``);
4. comparatives relative to the films the turn names, else to the last reply's picks ("darker",
   "funnier", "newer", "shorter");
5. words for categories and for metadata values, read from the catalog at load (``Vocabulary``),
   each negated when a negator ("no", "not", "nothing", "without", "avoid") opens its clause:
   "a thriller, but no horror" is Thriller and not Horror;
6. numbers ("under 90 minutes") against numeric metadata, and a count ("three documentaries");
7. what cannot be read: a greeting or thanks with nothing else, an empty request, and constraints
   on a field the catalog lacks ("a series" where nothing says which items are series).

Later turns override earlier ones: positive categories and each bound come from the newest turn
that states them; exclusions accumulate until a later turn asks for the thing again; a film's
newest sentiment wins. Everything here is rules and fuzzy matching (rapidfuzz); no model.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any

from agent.catalog import Item, normalize_title
from agent.pipeline.intent import rule_intent
from agent.pipeline.people import PeopleLinker

SENTIMENTS = ("liked", "disliked", "seen", "mentioned")

# Everyday words for categories; each maps to the categories it may mean (only those the catalog
# has are used). Negated, "violent" excludes all four.
CATEGORY_WORDS: dict[str, tuple[str, ...]] = {
    "funny": ("Comedy",),
    "comedy": ("Comedy",),
    "comedies": ("Comedy",),
    "laugh": ("Comedy",),
    "scary": ("Horror",),
    "horror": ("Horror",),
    "frightening": ("Horror",),
    "romantic": ("Romance",),
    "romance": ("Romance",),
    "rom-com": ("Romance", "Comedy"),
    "sci-fi": ("Sci-Fi",),
    "science fiction": ("Sci-Fi",),
    "space": ("Sci-Fi",),
    "animated": ("Animation",),
    "animation": ("Animation",),
    "cartoon": ("Animation",),
    "cartoons": ("Animation",),
    "kids": ("Family", "Children"),
    "children": ("Family", "Children"),
    "family": ("Family", "Children"),
    "thriller": ("Thriller",),
    "thrillers": ("Thriller",),
    "suspense": ("Thriller",),
    "war": ("War",),
    "western": ("Western",),
    "westerns": ("Western",),
    "documentary": ("Documentary",),
    "documentaries": ("Documentary",),
    "musical": ("Musical",),
    "musicals": ("Musical",),
    "crime": ("Crime",),
    "mystery": ("Mystery",),
    "mysteries": ("Mystery",),
    "fantasy": ("Fantasy",),
    "action": ("Action",),
    "adventure": ("Adventure",),
    "drama": ("Drama",),
    "dramas": ("Drama",),
    "noir": ("Film-Noir",),
    "violent": ("Action", "War", "Crime", "Horror"),
    "violence": ("Action", "War", "Crime", "Horror"),
    "gory": ("Horror",),
}

# Words for metadata values: (field, value). A field the catalog lacks makes the request
# unsupported for that constraint (said in the reply); ``tone`` words then fall back to
# ``TONE_FALLBACK`` categories where the catalog has them.
VALUE_WORDS: dict[str, tuple[str, str]] = {
    "series": ("kind", "series"),
    "show": ("kind", "series"),
    "shows": ("kind", "series"),
    "tv": ("kind", "series"),
    "binge": ("kind", "series"),
    "episodes": ("kind", "series"),
    "miniseries": ("kind", "series"),
    "uplifting": ("tone", "uplifting"),
    "feel-good": ("tone", "uplifting"),
    "feel good": ("tone", "uplifting"),
    "heartwarming": ("tone", "uplifting"),
    "hopeful": ("tone", "uplifting"),
    "cheer me up": ("tone", "uplifting"),
    "rough week": ("tone", "uplifting"),
    "rough day": ("tone", "uplifting"),
    "light": ("tone", "light"),
    "lighthearted": ("tone", "light"),
    "light-hearted": ("tone", "light"),
    "dark": ("tone", "dark"),
    "grim": ("tone", "dark"),
    "bleak": ("tone", "dark"),
    "gripping": ("tone", "tense"),
    "tense": ("tone", "tense"),
    "edge of my seat": ("tone", "tense"),
    "suspenseful": ("tone", "tense"),
    "quirky": ("tone", "quirky"),
    "offbeat": ("tone", "quirky"),
    "weird": ("tone", "quirky"),
    "thoughtful": ("tone", "thoughtful"),
    "thought-provoking": ("tone", "thoughtful"),
}
# What people ask for that a catalog's items rarely carry: (pattern on the request with titles
# blanked, the catalog field that would hold it, what the reply says). A catalog with a text
# field of that name whose values hold the words said is read by ``Vocabulary`` instead.
NOT_READ = [
    (
        (
            r"\b(?i:starring|featuring|directed by|written by|(?:with|by) (?:the )?(?:actor|actress|director))"
            r"(?:\s+[A-Z][\w'.-]*(?:\s+[A-Z][\w'.-]*)*)?"
            r"|\b(?i:with|by|from)\s+[A-Z][a-z'.-]+\s+[A-Z][a-z'.-]+"
            r"|\b(?i:actors?|actress(?:es)?|directors?|the cast)\b"
        ),
        "people",
        "this catalog does not say who is in or made an item",
    ),
    (
        (
            r"\b(?i:(?:english|french|spanish|german|italian|japanese|korean|chinese|mandarin|cantonese|hindi|"
            r"russian|swedish|danish|norwegian|portuguese|arabic|turkish|polish|dutch|greek|thai|persian|foreign)"
            r"(?:[- ]language)?|subtitled|subtitles|dubbed)\b"
        ),
        "language",
        "this catalog does not say which language or country an item is from",
    ),
    (
        r"(?i:\brated\s+(?:g|pg|pg-13|r|nc-17)\b|\b(?:pg-13|pg|nc-17|r)-rated\b|\bmpaa\b|\bage ratings?\b)",
        "rating",
        "this catalog has no age ratings",
    ),
]
TONE_FALLBACK = {"light": ("Comedy",), "uplifting": ("Comedy", "Family"), "dark": (), "tense": ("Thriller",)}
# How dark each tone reads, for "darker" and "lighter".
DARKNESS = {"uplifting": 0, "light": 0, "quirky": 1, "thoughtful": 2, "tense": 3, "dark": 4}

_YEAR_WORDS = r"between|before|until|after|since|from|in|pre|post|up to|through|to|and"
_SHOW_VERB = re.compile(r"\bshow(?=\s+(?:me|us|them|him|her|my|our)\b)", re.IGNORECASE)
# Nouns people use for any item ("a crime film", "a good movie"): a catalog value spelled so
# constrains only when contrasted ("a film, not a series") or negated ("not a film").
GENERIC_NOUNS = {"film", "films", "movie", "movies"}
# A clause with one of these asks softly: what it constrains re-weights the candidates
# (``RequestState.preferences``) instead of filtering them ("a comedy, ideally from the 90s").
# "X would be nice" is not one: people say it of what they ask for.
SOFT = re.compile(
    r"\b(?:preferably|ideally|if possible|if you can|if there is one|bonus (?:points )?(?:if|for))\b",
    re.IGNORECASE,
)

NEGATORS = (
    r"(?:no|not|nothing|without|avoid|never|none|except|don'?t want|do not want|skip|anything but|no more|isn'?t|"
    r"aren'?t)"
)
_NEGATED = re.compile(rf"\b{NEGATORS}\b", re.IGNORECASE)
_CLAUSE = re.compile(r"[.;!?]+|,|\bbut\b|\bhowever\b|\bthough\b", re.IGNORECASE)
_SENTENCE = re.compile(r"[.;!?]+\s+|\bbut\b", re.IGNORECASE)

SENTIMENT_CUES = [  # first match before the title, else after it, in the same sentence; in this order
    (
        "disliked",
        (
            r"did ?n[o']?t (?:really )?(?:like|enjoy|love)|don'?t (?:really )?like|do not like|dislike[ds]?|"
            r"hated?|couldn'?t stand|can'?t stand|not a fan|was (?:bad|awful|boring|terrible)|boring|awful|terrible|"
            r"not so much|not really|not for me|(?:was|is)n'?t for me|did ?n[o']?t work for me|\bmeh\b|dull|"
            r"bored me|(?:could|can)(?:n'?t| not) get into|did ?n[o']?t get (?:it|into)|fell flat|disappointing|"
            r"disappointed|overrated|waste of time|not (?:very |that |so )?good|too slow|dragged|"
            r"\b(?:not|no|except|without|other than|anything but|apart from|besides)\s*$"  # "..., but not X"
        ),
    ),
    (
        "liked",
        (
            r"lov(?:e|ed|ing)|lik(?:e|ed)|enjoy(?:ed)?|favou?rites?|big fan|fan of|adored?|\brate\b|really into|"
            r"great|amazing|fantastic|brilliant|excellent|wonderful|awesome|superb|masterpiece|blew me away|"
            r"(?:really|so|very) good|was good"
        ),
    ),
    ("seen", r"\bseen\b|watched|already saw|\bsaw\b"),
]
_LIKE_THIS = re.compile(r"\b(?:something|anything|more|others?|films?|movies?|ones?)\s+like\s*$", re.IGNORECASE)

ERA = [  # (pattern, (years before the catalog's newest year for year_min, for year_max))
    (r"\bnot (?:too |that |very )?old\b|\bmodern\b|\bnot ancient\b", (25, None)),
    (r"\b(?:recent|latest|newest|new releases?|brand[- ]new|this year)\b", (5, None)),
    (r"\b(?:classics?|old(?:er)? (?:films?|movies?|ones?)|golden age|vintage|old-school|oldies)\b", (None, 40)),
]
COMPARATIVES = {
    "darker": "darker",
    "more serious": "darker",
    "less light": "darker",
    "lighter": "lighter",
    "less dark": "lighter",
    "happier": "lighter",
    "funnier": "funnier",
    "more fun": "funnier",
    "newer": "newer",
    "more recent": "newer",
    "older": "older",
    "shorter": "shorter",
    "longer": "longer",
}
_MUCH = re.compile(r"\b(?:much|way|a lot|far)\s+$", re.IGNORECASE)

NUMBERS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "a couple of": 2,
    "a couple": 2,
    "a few": 3,
    "a pair of": 2,
}
_COUNT_NOUNS = (
    r"(?:films?|movies?|picks?|shows?|series|titles?|options?|suggestions?|recommendations?|ideas?|"
    r"things?|ones?|documentaries|comedies|thrillers|dramas|westerns|musicals|mysteries|horrors?)"
)
_COUNT = re.compile(
    r"\b(?P<n>\d{1,2}|"
    + "|".join(sorted(NUMBERS, key=len, reverse=True))
    + r")\s+(?:\w+[\s-]+){0,2}?"
    + _COUNT_NOUNS
    + r"\b",
    re.IGNORECASE,
)
MAX_COUNT = 20

_BOUND_WORDS = (
    r"under|less than|at most|no more than|no longer than|not longer than|shorter than|below|up to|max(?:imum)?|"
    r"over|more than|"
    r"at least|longer than|above"
)
_RUNTIME_BOUND = re.compile(
    rf"\b(?P<op>{_BOUND_WORDS})\s+(?P<n>\d{{2,3}})\s*(?:minutes|mins?|m)\b|"
    rf"\b(?:(?P<hop>{_BOUND_WORDS})\s+)?(?P<h>an?|one|two|three|\d)"
    r"(?:\s+and a half[\s-]+hours?|[\s-]+hours?(?:\s+and a half)?)\b",
    re.IGNORECASE,
)
_LOWER_BOUND = ("over", "more than", "at least", "longer than", "above")
_STRICT = ("under", "less than", "below", "shorter than", "over", "more than", "longer than", "above")
SHORT_MINUTES, LONG_MINUTES = 90, 140
_SHORT = re.compile(r"\b(?:short|quick)\b(?!\s+(?:story|stories|list))", re.IGNORECASE)
_LONG = re.compile(r"\b(?:long|epic|lengthy)\b", re.IGNORECASE)

GREETING = re.compile(
    r"^(?:(?:hi|hello|hey|hiya|yo|howdy|greetings|good (?:morning|afternoon|evening)|ok(?:ay)?|cool|great|nice|"
    r"thanks?(?: you)?(?: (?:so|very) much)?(?: for (?:the|your|these|those) (?:suggestions|recommendations|picks|"
    r"help|ideas))?|a lot|that'?s all|that is all|bye|goodbye|good ?night|see you|cheers|there|muse|again|everyone|"
    r"all|[:;]-?[()dp])[\s,.!?]*)+$",
    re.IGNORECASE,
)
# Words of a request that ask for something without saying what: left out of the query text.
FILLER = {
    "i",
    "me",
    "my",
    "we",
    "you",
    "your",
    "a",
    "an",
    "the",
    "some",
    "something",
    "anything",
    "any",
    "please",
    "can",
    "could",
    "would",
    "will",
    "should",
    "give",
    "show",
    "suggest",
    "recommend",
    "recommendations",
    "recommendation",
    "suggestions",
    "suggestion",
    "find",
    "want",
    "wanted",
    "like",
    "looking",
    "look",
    "for",
    "to",
    "watch",
    "watching",
    "film",
    "films",
    "movie",
    "movies",
    "one",
    "ones",
    "what",
    "else",
    "good",
    "nice",
    "great",
    "and",
    "or",
    "of",
    "in",
    "on",
    "with",
    "about",
    "that",
    "this",
    "is",
    "are",
    "be",
    "it",
    "maybe",
    "perhaps",
    "today",
    "tonight",
    "now",
    "really",
    "just",
    "also",
    "new",
    "other",
    "more",
    "another",
    "thing",
    "kind",
    "sort",
    "type",
    "have",
    "had",
    "seen",
    "see",
    "get",
    "let",
    "know",
    "think",
    "tell",
    "do",
    "does",
    "did",
    "am",
    "was",
    "were",
    "so",
    "very",
    "much",
    "lot",
    "but",
    "let's",
    "lets",
    "from",
    "loved",
    "love",
    "liked",
    "enjoyed",
    "there",
    "which",
}
# Left out of the query text too, though a title may be made of them ("Them!", "The Fan",
# "Next"): the words of request templates ("Would you suggest something I might like?", "I
# watched the films A and B and loved them") ask, they do not describe.
ASKING = FILLER | {
    "might",
    "may",
    "them",
    "they",
    "those",
    "these",
    "watched",
    "saw",
    "similar",
    "next",
    "ideas",
    "idea",
    "options",
    "titles",
    "picks",
    "us",
    "our",
    "fan",
    "favourite",
    "favorite",
    "favourites",
    "favorites",
    "enjoy",
    "adore",
    "adored",
    "thanks",
    "thank",
    "hi",
    "hello",
    "hey",
    "got",
    "need",
    "id",
    "i'd",
    "i'm",
    "im",
    "i've",
    "ive",
    "at",
    "by",
    "as",
    "all",
    "too",
    "been",
    "has",
    "how",
    "if",
    "its",
    "it's",
    "prefer",
    "rate",
}
# Words a fuzzily matched title may not start or end on ("I saw X", "a fan of X. A"); an exact
# title may ("I Saw the Devil").
_EDGE = {"i", "me", "my", "you", "we", "saw", "seen", "watched", "loved", "liked", "enjoyed", "hated"}
_EDGE |= {"of", "and", "or", "but", "so", "was", "is", "were", "please", "like", "week"}


# Words a title and a message may spell either way, compared in one form ("Aisle 7", "Mercer St").
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


_NUMBERED = re.compile(r"\s*(?:part|vol|volume|chapter|episode|book|no)\b", re.IGNORECASE)


def title_aliases(title: str) -> list[str]:
    """Other names people use for a catalog title, normalized: the alternative title in brackets
    and the title without it ("Raiders of the Lost Ark (Indiana Jones and the Raiders of the
    Lost Ark)"), and either side of a colon ("Wallace & Gromit: The Wrong Trousers", "Kill Bill:
    Vol. 1"), each of two words or more."""
    bare = re.sub(r"\s*\(\d{4}(?:[-–]\d{0,4})?\)\s*$", "", title.strip())
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


class TitleLinker:
    """Films named in a message -> catalog ids: an exact match of the normalized words
    (``normalize_title``) first, longest span first, then of another name of a title
    (``title_aliases``: a bracketed alternative, either side of a colon), then a fuzzy match
    (rapidfuzz ``fuzz.ratio`` at least ``FUZZY_CUTOFF`` against titles of about the span's
    length) for spans of two or more words; a fuzzy span may take over exact matches inside it
    that are two words or more shorter ("Harry Potter and the Chamber of Scerets" is not "The
    Chamber"). A one-word title must be capitalized or quoted in the message ("I loved Alien", not
    "something for my kids"). Among films of one name, a year next to it picks; else the most
    popular."""

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
            if key not in self.by_title:
                self.by_length.setdefault(len(key), []).append(key)
            self.by_title.setdefault(key, [])
            self.by_title[key] = [x for x in self.by_title[key] if x.id != it.id] + [it]
            for alias in title_aliases(it.title):
                self.aliases[alias] = [x for x in self.aliases.get(alias, []) if x.id != it.id] + [it]

    def films(self, key: str) -> list[Item]:
        """The items named ``key`` (a normalized span): by title, else by another name."""
        return self.by_title.get(key) or self.aliases.get(key, [])

    def _choose(self, key: str, year: int | None) -> Item:
        films = self.films(key)
        if year is not None:
            dated = [f for f in films if f.year == year]
            if dated:
                return dated[0]
        return min(films, key=lambda f: (self.rank.get(f.id, len(self.rank)), f.id))

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
        return sorted(found, key=lambda f: f[1])

    def _scan(self, text: str, tokens: list, taken: list, found: list, fuzzy: bool) -> None:
        for length in range(min(self.MAX_WORDS, len(tokens)), 0, -1):
            for s in range(len(tokens) - length + 1):
                inside = [f for f in found if tokens[s][1] <= f[1] and f[2] <= tokens[s + length - 1][2]]
                if any(taken[s : s + length]):
                    # only a fuzzy span may take over, and only shorter exact matches wholly inside it
                    covered = sum(taken[s : s + length])
                    spans = sum(len(re.findall(r"[\w'’&-]+", text[f[1] : f[2]])) for f in inside)
                    if not fuzzy or length < 3 or covered != spans or spans > length - 2:
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
                if fuzzy and not self.films(key) and length >= 2 and len(key) >= 8:
                    key = self._fuzzy(key) or key
                elif fuzzy and any(taken[s : s + length]):
                    continue  # an exact match over exact matches is not a takeover
                if not self.films(key):
                    continue
                if any(taken[s : s + length]):
                    if all(f[0].id == self._choose(key, None).id for f in inside):
                        continue  # the same film, only a longer span
                    for f in inside:
                        found.remove(f)
                year = re.match(r"\s*\(?((?:18|19|20)\d\d)\)?", text[end:])
                found.append((self._choose(key, int(year[1]) if year else None), start, end))
                taken[s : s + length] = [True] * length

    @staticmethod
    def _plausible(text: str, words: list, start: int, end: int, exact: bool = True) -> bool:
        """A span can be a title when it holds a capitalized word that is not the sentence's
        first, or it is quoted, or it is two words or more with one capital, or (matched
        exactly, people type titles in lower case) two words or more of which two are not request
        words (three, matched fuzzily); and it is not made of request words alone."""
        content = [w for w, *_ in words if w.lower() not in FILLER and w.lower() not in CATEGORY_WORDS]
        if not content:
            return False
        quoted = text[max(0, start - 1) : start] in "\"'“‘" and text[end : end + 1] in "\"'”’"
        if quoted and start > 0:
            return True
        capitals = [w for w, s, _ in words if w[:1].isupper() and w.lower() not in ("i", "i'm", "i've", "i'd")]
        if not capitals:  # fuzzily only when three words are not request words ("lost lugage lovers")
            return len(words) >= 2 and len(content) >= (2 if exact else 3)
        sentence_start = start == 0 or re.search(r"[.!?]\s*$", text[:start]) is not None
        if len(words) == 1:
            return (
                not sentence_start
                or text[end : end + 1] in (",",)
                or bool(re.match(r"\s*\(\d{4}\)|\s+(?:was|is|were)\s+(?:so\s+|really\s+|very\s+)?\w+", text[end:]))
            )
        return True


def _clauses(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, negated) of each clause of ``text``: negated when a negator opens it."""
    out, start = [], 0
    for m in [*_CLAUSE.finditer(text), None]:
        end = m.start() if m else len(text)
        if end > start:
            out.append((start, end, bool(_NEGATED.search(text[start:end]))))
        start = m.end() if m else len(text)
    return out


def _clause_of(text: str, pos: int) -> tuple[int, int]:
    """The (start, end) of the clause of ``text`` (``_CLAUSE``: commas, "but", sentence ends)
    that holds position ``pos``."""
    start, end = 0, len(text)
    for m in _CLAUSE.finditer(text):
        if m.end() <= pos:
            start = m.end()
        elif m.start() >= pos:
            end = m.start()
            break
    return start, end


def _negated_at(clauses, pos: int, text: str) -> bool:
    for start, end, negated in clauses:
        if start <= pos < end:
            return negated and _NEGATED.search(text[start:pos]) is not None
    return False


_CLAUSE_END = re.compile(r"[.;!?,]+\s*|\bbut\b", re.IGNORECASE)


VERDICT_WORDS = 3


def _sentiment(text: str, start: int, end: int) -> str:
    """The sentiment of the film at ``text[start:end]``: the cue nearest before it in its clause,
    else the first after it in its clause ("Y not so much"), else the same in its sentence
    ("I loved A, B and C": a list shares one cue), else a verdict of at most ``VERDICT_WORDS``
    words that makes the next sentence ("X? Boring."); "like" right before it ("something like
    X") is a reference."""
    for boundary in (_CLAUSE_END, _SENTENCE):
        bounds = [0] + [m.end() for m in boundary.finditer(text)] + [len(text)]
        lo = max(b for b in bounds if b <= start)
        hi = min((m.start() for m in boundary.finditer(text) if m.start() >= end), default=len(text))
        before, after = text[lo:start], text[end:hi]
        if _LIKE_THIS.search(before):
            return "mentioned"
        cues = [(m.start(), m.end(), s) for s, cue in SENTIMENT_CUES for m in re.finditer(cue, before, re.IGNORECASE)]
        if cues:
            # the cue ending nearest the title, unless it is inside a dislike cue that starts
            # earlier: "did not like X", "not a fan of X" (whose "like" and "fan of" are liked cues)
            nearest, _, best = max(cues, key=lambda c: c[1])
            best = next((s for a, b, s in cues if s == "disliked" and a < nearest < b), best)
            if best == "seen":  # "watched X and loved it": how they liked it says more
                stop = min((m.start() for m in _SENTENCE.finditer(text) if m.start() >= end), default=len(text))
                sentence_after = text[end:stop]
                later = [s for s, cue in SENTIMENT_CUES[:2] if re.search(cue, sentence_after, re.IGNORECASE)]
                best = later[0] if later else best
            return best
        for sentiment, cue in SENTIMENT_CUES:
            if re.search(cue, after, re.IGNORECASE):
                return sentiment
    # "X though? Boring.": a verdict of a few words right after the film's sentence
    stop = min((m.end() for m in _SENTENCE.finditer(text) if m.start() >= end), default=len(text))
    verdict = re.match(r"\s*([^.;!?]*)", text[stop:])[1]
    if len(verdict.split()) <= VERDICT_WORDS:
        for sentiment, cue in SENTIMENT_CUES[:2]:
            if re.search(cue, verdict, re.IGNORECASE):
                return sentiment
    return "mentioned"


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
        for start, end in [(s, e) for _, s, e in found] + [(p.start, p.end) for p in people]:
            masked[start:end] = "x" * (end - start)
        masked = "".join(masked)
        self._people(people, masked, turn, consume)
        for item, start, end in found:
            turn.mentions.append(Mention(item.id, item.title, text[start:end], _sentiment(masked, start, end)))
            year = re.match(r"\s*\(?(?:18|19|20)\d\d\)?", text[end:])
            consume(start, end + (year.end() if year else 0))
        for start, end in unknown_titles(masked, found):
            turn.unsupported.append(f'"{text[start:end]}": not in the catalog')
            consume(start, end)
        self._not_read("".join(rest), turn, consume)
        lower = "".join(rest).lower()
        self._era_and_years(lower, turn, consume)
        lower = "".join(rest).lower()
        self._comparatives(lower, turn, consume, last_picks)
        lower = "".join(rest).lower()
        self._numbers(lower, turn, consume)
        lower = "".join(rest).lower()
        self._words(lower, turn, consume)
        lower = "".join(rest).lower()
        clauses = _clauses(lower)
        kept = [w for s, e, negated in clauses if not negated for w in re.findall(r"[\w'-]+", lower[s:e])]
        content = [w for w in kept if w not in ASKING and not w.isdigit() and len(w) > 1]
        turn.query = " ".join(w for w in (turn.query, " ".join(content)) if w)
        return turn

    def _soft(self, text: str, turn: _Turn, last_picks: Sequence[str]) -> str:
        """Reads each clause with a ``SOFT`` cue on its own: its constraints become the turn's
        preferences, its films and words join the turn's; returns ``text`` with those clauses
        blanked, for the hard reading."""
        spans = []
        for m in SOFT.finditer(text):
            start, end = _clause_of(text, m.start())
            if not spans or start >= spans[-1][1]:
                spans.append((start, end))
        for start, end in spans:
            clause = text[start:end]
            cue = SOFT.search(clause)
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

    def _people(self, people: Sequence, masked: str, turn: _Turn, consume) -> None:
        """Each person found: a constraint on the fields the words point at (``PeopleLinker``),
        an exclusion when their clause is negated ("nothing with Adam Sandler") or the words turn
        them down as they would a film ("I can't stand Adam Sandler movies")."""
        clauses = _clauses(masked.lower())
        for p in people:
            fields = self.vocabulary.people.fields_of(p.name, p.field)
            negated = _negated_at(clauses, p.start, masked.lower()) or _sentiment(masked, p.start, p.end) == "disliked"
            (turn.excluded_people if negated else turn.people)[p.name] = fields
            possessive = re.match(r"['’]s\b", masked[p.end :])
            consume(p.cue_start, p.end + (possessive.end() if possessive else 0))

    def _era_and_years(self, lower: str, turn: _Turn, consume) -> None:
        newest = self.vocabulary.newest_year
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
                self._compare(kind, refs, named, much, turn)

    def _compare(self, kind: str, refs: list[Item], named: str, much: bool, turn: _Turn) -> None:
        than = f" than {named}" if named else ""
        turn.comparisons.append(f"{'much ' if much else ''}{kind}{than}")
        v = self.vocabulary
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

    def _not_read(self, text: str, turn: _Turn, consume) -> None:
        """``NOT_READ`` asks: said in the reply as unsupported and kept out of the query, unless
        the catalog has the field with a value the words name."""
        for pattern, name, why in NOT_READ:
            values = {v.lower() for v in self.vocabulary.text_fields.get(name, ())}
            credits = name == "people" and bool(self.vocabulary.people)
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

    def _numbers(self, lower: str, turn: _Turn, consume) -> None:
        name = self.vocabulary.runtime_field()
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

    def _words(self, lower: str, turn: _Turn, consume) -> None:
        """Category and metadata-value words, each negated when its clause is."""
        v = self.vocabulary
        for m in _SHOW_VERB.finditer(lower):  # "show me a thriller" asks for no TV show
            consume(m.start(), m.end())
            lower = lower[: m.start()] + " " * (m.end() - m.start()) + lower[m.end() :]
        clauses = _clauses(lower)
        phrases = sorted(
            set(CATEGORY_WORDS) | set(VALUE_WORDS) | {c.lower() for c in v.categories}, key=len, reverse=True
        )
        value_words = {val.lower(): (name, val) for name, vals in v.text_fields.items() for val in vals}
        phrases += [w for w in value_words if w not in phrases]
        for phrase in phrases:
            for m in re.finditer(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", lower):
                negated = _negated_at(clauses, m.start(), lower)
                consume(m.start(), m.end())
                lower = lower[: m.start()] + " " * (m.end() - m.start()) + lower[m.end() :]
                self._word(phrase, negated, turn, value_words)

    def _word(self, phrase: str, negated: bool, turn: _Turn, value_words: dict) -> None:
        v = self.vocabulary
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
