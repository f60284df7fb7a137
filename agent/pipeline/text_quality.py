"""Checks on the texts Muse writes (explanations and drafts), as pure functions.

The service uses some of them as its second line of defence (a continuation that fails is
replaced by the template); ``muse bench agent`` computes all of them over every text it
receives. Each is tested on hand-worked cases in tests/test_text_quality.py.

Titles are compared in the normalised form of ``agent.pipeline.grounding.normalize`` (lower-case words,
"Matrix, The" = "The Matrix", a trailing year dropped).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

from agent.catalog import Item
from agent.pipeline.grounding import GroundingCheck, normalize

_WATCHED = re.compile(
    r"\b(?:you|this person|the reader|the user)(?:'ve|’ve| have| has| had)?\s+(?:already\s+|just\s+|once\s+)?"
    r"(?:watched|seen|saw|loved|enjoyed|liked)\b"
    r"(?P<what>[^,;:.!?]*)",
    re.IGNORECASE,
)
_WATCHED_IT = re.compile(
    r"\b(?:that|which)\s+you(?:'ve|’ve| have)?\s+(?:already\s+|just\s+)?(?:watched|seen|saw)\b", re.IGNORECASE
)  # "... is a thriller that you watched"
_QUOTED = re.compile(r"[\"“”]([^\"“”]{1,120})[\"“”]")
_NEGATION = re.compile(r"\b(?:not|never|n't|n’t)\b")
_SENTENCE = re.compile(r"[^.!?]+[.!?]*")
_END = re.compile(r"[.!?][\"”’')\]]*$")
_STOPWORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "he",
        "her",
        "his",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "she",
        "that",
        "the",
        "their",
        "them",
        "they",
        "this",
        "to",
        "was",
        "were",
        "who",
        "with",
        "will",
        "one",
        "two",
        "into",
        "out",
        "up",
        "over",
        "after",
        "about",
        "film",
        "films",
        "movie",
        "movies",
        "story",
        "tags",
    }
)
# How a category reads in running text, beside its own name (lower-cased).
CATEGORY_WORDS = {
    "sci-fi": ("sci-fi", "science fiction", "science-fiction"),
    "children": ("children", "family", "kids"),
    "animation": ("animation", "animated"),
    "film-noir": ("film noir", "film-noir", "noir"),
    "musical": ("musical", "music"),
    "comedy": ("comedy", "comic", "funny"),
    "romance": ("romance", "romantic", "love story"),
    "documentary": ("documentary",),
    "thriller": ("thriller", "suspense"),
}


def _words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def _contains(text_norm: str, title_norm: str) -> bool:
    return bool(title_norm) and f" {title_norm} " in f" {text_norm} "


def invented_titles(text: str, allowed: Iterable[str], catalog: GroundingCheck) -> list[str]:
    """Titles ``text`` names that are not in ``allowed``: catalog titles found verbatim, any
    span in double quotes, and the name after "called/titled/named" (``GroundingCheck``)."""
    return catalog.foreign_titles(text, allowed)


def claims_watched_pick(text: str, pick_title: str) -> bool:
    """Whether ``text`` tells the reader they already watched the pick: "you (or "this
    person", "the reader") watched / have seen / loved ..." followed, in the same clause, by the
    pick's title, "it" or "this film"; or "(a film) that you watched". A negated claim ("you
    have not seen it") is not one."""
    pick = normalize(pick_title)
    if _WATCHED_IT.search(text):
        return True
    for m in _WATCHED.finditer(text):
        if _NEGATION.search(text[max(0, m.start() - 12) : m.start()] + m.group(0).lower()):
            continue
        quoted = _QUOTED.findall(m["what"])
        if any(normalize(q) == pick for q in quoted):
            return True
        what = _words(_QUOTED.sub(" , ", m["what"]))  # a quoted title is whole: "Spider-Man 2" is not "Spider-Man"
        if _contains(what, pick) or re.match(r"^(?:it|this|this one|this film|this movie|that one)\b", what):
            return True
    return False


def cited_titles(text: str, titles: Iterable[str]) -> list[str]:
    """Each of ``titles`` that ``text`` names, once per time it is named (so a title cited
    twice appears twice), in the order of ``titles``. A quoted span names the title it equals
    and no other ("Batman Forever" does not cite "Batman"); outside quotes, a title is named
    where its words stand."""
    quoted = [normalize(q) for q in _QUOTED.findall(text)]
    rest = _words(_QUOTED.sub(" , ", text))
    out = []
    for title in titles:
        t = normalize(title)
        if t:
            out += [title] * (quoted.count(t) + len(re.findall(rf"(?<!\S){re.escape(t)}(?!\S)", rest)))
    return out


def repeats_citation(text: str, history_titles: Iterable[str]) -> bool:
    """Whether some history title is named more than once."""
    cited = cited_titles(text, dict.fromkeys(history_titles))
    return len(cited) != len(set(cited))


def names_title(text: str, title: str) -> bool:
    """Whether ``text`` names ``title`` (normalised, word-bounded)."""
    return _contains(_words(text), normalize(title))


def names_history(text: str, item: Item, history_titles: Iterable[str]) -> list[str]:
    """The history titles that ``text`` (about ``item``) names where the item's own title and
    description do not: "The X-Files" in a pitch of "The X-Files: Fight the Future", or
    "Rushmore" for a film tagged "mount rushmore", are the pick's facts, not the reader's films."""
    own = f"{normalize(item.title)} . {item.text}"
    return [t for t in cited_titles(text, history_titles) if not names_title(own, t)]


def is_cut_off(text: str) -> bool:
    """Whether ``text`` stops mid-sentence: empty, trailing an ellipsis, or not ending with
    ``.``, ``!`` or ``?`` (a closing quote or bracket after it is fine)."""
    text = text.strip()
    return not text or text.endswith(("...", "…")) or not _END.search(text)


def addresses_reader(text: str) -> bool:
    """Whether ``text`` speaks to the reader ("you", "your")."""
    return bool(re.search(r"\byou(?:r|rs|'ve|’ve|'ll|’ll)?\b", text, re.IGNORECASE))


def mentions_attribute(text: str, item: Item, titles: Sequence[str] = ()) -> bool:
    """Whether ``text`` says something checkable about ``item``: its year, one of its
    categories (or a common word for it), or two consecutive words of its description (not
    both stop words). Words inside ``titles`` and the item's own title do not count."""
    norm = f" {_words(text)} "
    for title in (item.title, *titles):
        t = normalize(title)
        if t:
            norm = norm.replace(f" {t} ", " | ")
    if item.year and f" {item.year} " in norm:
        return True
    for category in item.categories:
        words = CATEGORY_WORDS.get(category.lower(), (category.lower(),))
        if any(f" {_words(w)} " in norm for w in words):
            return True
    desc = _words(item.text).split()
    for a, b in itertools.pairwise(desc):
        if not (a in _STOPWORDS and b in _STOPWORDS) and f" {a} {b} " in norm:
            return True
    return False


# Category names that, in running text, can only be a genre claim (as running text writes them).
# Words that are ordinary nouns too ("family", "war", "crime", "mystery", "romance", "adventure",
# "children") are left out: "a family's orchard" claims no genre.
GENRE_WORDS = {
    "comedy": ("comedy", "comedies"),
    "drama": ("drama", "dramas"),
    "thriller": ("thriller", "thrillers"),
    "horror": ("horror",),
    "sci-fi": ("sci-fi", "science fiction"),
    "western": ("western",),
    "animation": ("animation", "animated"),
    "documentary": ("documentary",),
    "film-noir": ("film noir", "noir"),
    "musical": ("musical",),
    "action": ("action",),
    "fantasy": ("fantasy",),
}
_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)\b")


def claimed_categories(text: str, categories: Iterable[str]) -> list[str]:
    """Which of ``categories`` (a catalog's) ``text`` claims, by a word that can only name a
    genre (``GENRE_WORDS``: "a sci-fi comedy" claims Sci-Fi and Comedy; "a family's orchard"
    claims nothing)."""
    norm = f" {_words(text)} "
    out = []
    for category in categories:
        words = GENRE_WORDS.get(category.lower(), ())
        if any(f" {_words(w)} " in norm for w in words):
            out.append(category)
    return out


def wrong_years(text: str, years: Iterable[int | None]) -> list[int]:
    """Years (1800-2099) that ``text`` names outside ``years``."""
    allowed = {y for y in years if y}
    return [int(y) for y in _YEAR.findall(text) if int(y) not in allowed]


# Links: URLs, bare domains and e-mail addresses. A recommendation text never needs one, and a
# catalog description that carries one is the classic route of an injected link.
_LINK = re.compile(
    r"(?i)\b(?:https?://|www\.)\S+|\b[\w-]+(?:\.[\w-]+)*\.(?:com|net|org|io|ru|xyz|info|ly|co|biz|app)"
    r"\b(?:/\S*)?|\b[\w.+-]+@[\w-]+\.[\w.]+"
)
# Words addressed to a language model rather than to a reader (OWASP LLM01, prompt injection).
_INSTRUCTION = re.compile(
    r"(?i)\b(?:ignore|disregard|forget|override)\b[^.!?]{0,40}\b(?:instructions?|prompts?|rules|above|previous|"
    r"guidelines)\b|\bsystem prompt\b|\byou are now\b|\bas an ai\b|\bnew instructions?\b|"
    r"\b(?:developer|admin|god|dan) mode\b|\bjailbreak|\b(?:respond|reply|answer) only with\b|"
    r"(?:^|\s)(?:system|assistant|user)\s*:|<\|?/?(?:im_start|im_end|system|assistant)\|?>|"
    r"\brepeat (?:after me|your)\b|"
    r"\b(?:print|reveal|show|output)\b[^.!?]{0,30}\b(?:prompt|instructions)\b"
)


def has_link(text: str) -> bool:
    """Whether ``text`` holds a URL, a bare domain (``evil.example.com``) or an e-mail address."""
    return bool(_LINK.search(text))


def instruction_like(text: str) -> bool:
    """Whether ``text`` reads as an instruction to a language model ("ignore the previous
    instructions", "system:", "reveal your prompt", ...), the shape of a prompt injection."""
    return bool(_INSTRUCTION.search(text))


def carries_payload(text: str) -> bool:
    """Whether ``text`` holds a link or words addressed to a model: what no text Muse shows
    may carry, wherever it came from."""
    return has_link(text) or instruction_like(text)


def safe_description(text: str) -> str:
    """``text`` (a catalog description) without the sentences that hold a link or read as an
    instruction to a model: what the model is shown and what a template may quote. Tags
    (``Tags: a, b``) are filtered tag by tag."""
    if text.startswith("Tags:"):
        tags = [t.strip() for t in text.removeprefix("Tags:").split(",")]
        kept = [t for t in tags if t and not carries_payload(t)]
        return f"Tags: {', '.join(kept)}" if kept else ""
    kept = [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s and not carries_payload(s)]
    return " ".join(kept)


def copied_phrases(text: str, sources: Iterable[str], own: Iterable[str] = (), n: int = 5) -> list[str]:
    """Runs of ``n`` words of ``text`` that occur in ``sources`` (e.g. a prompt's worked
    examples) but in none of ``own`` (the facts the text was given): words copied from
    somewhere they are not true."""

    def grams(t: str) -> set[str]:
        w = _words(t).split()
        return {" ".join(w[i : i + n]) for i in range(len(w) - n + 1)}

    mine, theirs = grams(text), set().union(*(grams(t) for t in sources))
    given = set().union(*(grams(t) for t in own))
    return sorted((mine & theirs) - given)


def _content(words: str) -> list[str]:
    return [w for w in words.split() if w not in _STOPWORDS and len(w) > 1]


def repeats_sentence(text: str, overlap: float = 0.8) -> bool:
    """Whether two sentences of ``text`` say the same thing: their content words (stop words
    aside) overlap by at least ``overlap`` of the smaller set."""
    said = [set(_content(s)) for s in sentences(text)]
    return any(
        a and b and len(a & b) / min(len(a), len(b)) >= overlap for i, a in enumerate(said) for b in said[i + 1 :]
    )


def repeats_phrase(text: str) -> bool:
    """Whether two content words in a row occur twice in ``text`` ("lazy, lazy, lazy"; "takes
    a chance on ... takes a chance on"). Meant for what the model wrote, not for a text whose
    start already names a title the model may rightly repeat."""
    content = _content(_words(text))
    pairs = [" ".join(pair) for pair in itertools.pairwise(content)]
    return len(pairs) != len(set(pairs))


def near_repeats(text: str) -> bool:
    """``repeats_sentence`` or ``repeats_phrase``: the same thing said twice."""
    return repeats_sentence(text) or repeats_phrase(text)


def sentences(text: str) -> list[str]:
    """The sentences of ``text``, normalised (lower-case words)."""
    return [s for s in (_words(m) for m in _SENTENCE.findall(text)) if s]


def unique_sentence_ratio(texts: Iterable[str]) -> float:
    """Distinct sentences / all sentences over ``texts`` (1.0 = no sentence repeats; 1.0 for no
    sentences at all)."""
    every = [s for t in texts for s in sentences(t)]
    return len(set(every)) / len(every) if every else 1.0


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

    tokens = re.findall(r"([a-z0-9]+)('[a-z]+)?", text.lower().replace("’", "'"))  # "crew's" -> crew, 's
    words = tuple(w for w, suffix in tokens if len(w + suffix) > 1 and w not in _NOT_COUNTED)
    return Support(words, tuple(w for w in words if not supported(w)))
