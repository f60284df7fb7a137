"""The support measure (issue 24): does what the model wrote stand on the facts it was given?

A content word of a model-written clause is *supported* when its stem, or a listed synonym's,
occurs among the facts the model was shown (``text_facts.shown_facts``). ``muse bench agent`` and
``muse eval`` report the unsupported-word rate and the share of texts with any.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

# --- Support: does what the model wrote stand on the facts it was given? ---------------------
#
# A content word of a model-written clause is *supported* when its stem, or a listed synonym's,
# occurs among the facts the model was shown (the pick's title, year, categories and description
# excerpt; for an explanation also the cited history titles and their categories). Closed-class
# words and the glue every sentence about a film needs ("follows", "story", "about") count for
# nothing either way. Stems are Snowball's English stemmer (Porter 2); two stems also match when
# the shorter, of at least five letters, begins the longer ("robber"/"robberi").

# Closed-class words: determiners, pronouns, prepositions, conjunctions, auxiliaries, adverbs of degree.
FUNCTION_WORDS = frozenset(
    """a an the this that these those some any each every all both either neither no nor not only own
    same such other another more most much many few less least very too so than then there here i
    me my mine we us our you your yours he him his she her hers it its they them their theirs one
    ones who whom whose which what whatever whoever where when while why how whether if because
    though although as at by for from in into of off on onto out over under up down with within
    without about above across after against along among around before behind below beneath beside
    besides between beyond during except inside near through throughout till toward towards until
    upon via and but or yet also just even still again ever never always often once twice to is are
    was were be been being am has have had having do does did doing will would shall should can
    could may might must s t ll ve re d isn aren wasn weren don doesn didn won wouldn can cannot
    himself herself itself themselves yourself ourselves myself whose something someone anything
    everything nothing everyone anyone somehow""".split()  # noqa: SIM905 (a word list reads better as text)
)
# Words any pitch or explanation may use without a fact behind them: what a film is and does as a
# story ("a tale that follows ..."), not what happens in it.
GLUE_WORDS = frozenset(
    """film films movie movies story stories tale tales picture feature plot follows follow following
    tells tell told centers centres revolves focuses explores explore set sets takes take story's
    begins starts becomes become finds find meets meet gets get make makes made try tries watch
    watching viewer viewers audience fans fan new first last""".split()  # noqa: SIM905 (a word list reads better as text)
)
_NOT_COUNTED = FUNCTION_WORDS | GLUE_WORDS
# Word -> the fact words that support it (besides its own stem): how a category reads in text.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "funny": ("comedy",),
    "comic": ("comedy",),
    "comedic": ("comedy",),
    "hilarious": ("comedy",),
    "laughs": ("comedy",),
    "romantic": ("romance",),
    "love": ("romance",),
    "scary": ("horror",),
    "terrifying": ("horror",),
    "frightening": ("horror",),
    "suspense": ("thriller",),
    "suspenseful": ("thriller",),
    "tense": ("thriller",),
    "gripping": ("thriller",),
    "animated": ("animation",),
    "cartoon": ("animation",),
    "kids": ("children", "family"),
    "family": ("children",),
    "children": ("family",),
    "science": ("sci",),
    "fiction": ("fi",),
    "space": ("sci",),
    "noir": ("noir",),
    "music": ("musical",),
    "songs": ("musical",),
    "criminal": ("crime",),
    "criminals": ("crime",),
    "war": ("war",),
    "soldiers": ("war",),
    "cowboy": ("western",),
    "detective": ("mystery", "crime"),
    "magic": ("fantasy",),
    "dramatic": ("drama",),
}


@cache
def _stemmer():
    import snowballstemmer

    return snowballstemmer.stemmer("english")


def _stem(word: str) -> str:
    return _stemmer().stemWord(word)


def _stems_match(a: str, b: str) -> bool:
    short, long = sorted((a, b), key=len)
    return a == b or (len(short) >= 5 and long.startswith(short))


@dataclass(frozen=True)
class Support:
    """The support of one model-written text: ``words`` are its content words (lower-case, in
    order), ``unsupported`` those of them that no fact supports."""

    words: tuple[str, ...]
    unsupported: tuple[str, ...]

    @property
    def rate(self) -> float:
        """Unsupported content words / content words (0.0 for a text with none)."""
        return len(self.unsupported) / len(self.words) if self.words else 0.0


def support(text: str, facts: Iterable[str]) -> Support:
    """Which content words of ``text`` (what the model wrote, without Muse's own opening) the
    ``facts`` (the strings the model was shown about the pick and the cited items) support.

    A word is skipped when it is a function or glue word (``FUNCTION_WORDS``, ``GLUE_WORDS``) or
    a single letter; it is supported when its stem matches the stem of a fact word, or of a word
    ``SYNONYMS`` lists for it, and a number only when it occurs in the facts. "a night-train
    robbery" against the fact "robbers hold up a night train" is supported; "takes a sleeper to
    the moon" has two unsupported words (sleeper, moon)."""
    fact_words = set(re.findall(r"\w+", " ".join(facts).lower()))
    stems = {_stem(w) for w in fact_words}

    def supported(word: str) -> bool:
        if word.isdigit():
            return word in fact_words
        candidates = {_stem(word), *(_stem(s) for s in SYNONYMS.get(word, ()))}
        return any(_stems_match(c, s) for c in candidates for s in stems)

    words = tuple(content_words(text))
    return Support(words, tuple(w for w in words if not supported(w)))


def informativeness(text: str, facts: Iterable[str]) -> float:
    """Supported facts per word (issue 24, item 3): the distinct content words of ``text`` that
    ``facts`` support, divided by all its words (0.0 for a text with no words). "where a
    submarine's sonar officer uncovers a mutiny plot." -> 5 / 9 ("plot" is a glue word); "where
    the same alley." -> 1 / 4."""
    measured = support(text, facts)
    words = re.findall(r"\w+(?:['’]\w+)?", text)
    if not words:
        return 0.0
    return len(set(measured.words) - set(measured.unsupported)) / len(words)


def content_words(text: str) -> list[str]:
    """The words of ``text`` the support measure counts, lower-case, in order: not function or
    glue words, not single letters; a possessive is cut ("crew's" -> "crew")."""
    tokens = re.findall(r"([a-z0-9]+)('[a-z]+)?", text.lower().replace("’", "'"))
    return [w for w, suffix in tokens if len(w + suffix) > 1 and w not in _NOT_COUNTED]


def stem(word: str) -> str:
    """``word``'s Snowball (Porter 2) English stem: "robbers" -> "robber"."""
    return _stem(word)
