"""The reader's word tables: sentiments, everyday words for categories and metadata values,
what catalogs rarely carry, era words, comparatives, numbers and runtime bounds. Data only."""

from __future__ import annotations

import re

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
