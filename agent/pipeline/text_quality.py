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


_CLAUSE_BREAK = re.compile(r",\s+|;\s+|\s+and\s+")


def cut_repeat(text: str) -> str:
    """``text`` (a sentence the model wrote) cut at the clause break (a comma, a semicolon, an
    "and") before the first clause that repeats a phrase of what came before it
    (``repeats_phrase``) or says only words said before, closed with its own end mark: " with
    a shy DJ, a shy DJ, a shy DJ." -> " with a shy DJ."; " the courthouse, the courthouse." ->
    " the courthouse."; ``text`` itself when nothing repeats or no clause stands before the
    repeat. A model made to copy the facts' phrases sometimes copies one twice; what it said
    first stays."""
    stripped = text.rstrip()
    if not stripped:
        return text
    end = stripped[-1] if stripped[-1] in ".!?" else "."
    cuts = [m.start() for m in _CLAUSE_BREAK.finditer(text)] + [len(stripped) - 1]
    kept, seen = "", set()
    for start, stop in zip([0, *cuts], cuts):
        clause = set(_content(_words(text[start:stop])))
        if repeats_phrase(text[:stop]) or (clause and clause <= seen):
            return kept + end if _content(_words(kept)) else text
        kept, seen = text[:stop], seen | clause
    return text


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
