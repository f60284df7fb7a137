"""What the model is told about a pick, and so what it may say (issue 24).

One definition of the facts a text prompt shows (``prompt_facts``), the same facts as strings
for the support measure (``shown_facts``), and the phrases a continuation is made of
(``fact_spans``). The facts are the catalog's: title, year, categories, a description excerpt
and the item's metadata ("Details": a demo item's kind, runtime and tone; the director, writer,
cast and language ``muse ingest --facts`` joins to MovieLens films). A pick with none of a
description or details gets no model text: the model knows nothing about these films
(design.md), so it would have to invent.
"""

from __future__ import annotations

from agent.catalog import Item, metadata_entries
from agent.llm.engine import span_grammar
from agent.pipeline.evidence import Evidence
from agent.pipeline.grounding import natural_title
from agent.pipeline.support import content_words, stem
from agent.pipeline.text_quality import safe_description

DESCRIPTION_CHARS = 240
NAMES = 3  # entries of a list field shown (the first credited)
THEME_WORDS = 3  # words of the pick's description shared with the cited films', given to the model
THEME_LETTERS = 5  # the shortest such word


def details(item: Item, names: int = NAMES) -> str:
    """The item's list fields (credits, languages) as the prompt shows them, fields in name
    order, "; "-joined, each by its first ``names`` entries (``"cast Al Pacino, Robert De
    Niro; director Michael Mann"``); a field name's underscores read as spaces. "" for an item
    without one. Text and number fields (a demo item's kind, runtime, tone) are left out: shown
    as "tone tense", the model wrote "with a tense tone" into every pitch; a shared tone is said
    in the explanation's start instead (``generation.shared_phrase``)."""
    out = []
    for key, value in sorted((item.metadata or {}).items()):
        if isinstance(value, (list, tuple)) and value:
            out.append(f"{key.replace('_', ' ')} {', '.join(_entries(value, names))}")
    return "; ".join(out)


def excerpt(text: str, limit: int = DESCRIPTION_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters at a word's end (a longer text loses its
    last, partial word): the model is never shown half a word to copy."""
    if len(text) <= limit:
        return text
    cut = text[: limit + 1].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip(" ,;:-")


def prompt_facts(item: Item) -> dict:
    """The pick's facts as the text prompts' templates take them: ``title`` (natural word
    order), ``year``, ``categories``, ``description`` (without links or words addressed to a
    model, an ``excerpt``) and ``details``."""
    return {
        "title": natural_title(item.title),
        "year": item.year,
        "categories": list(item.categories),
        "description": excerpt(safe_description(item.text)),
        "details": details(item),
    }


def has_facts(item: Item) -> bool:
    """Whether the model has something true to say about ``item`` beyond its title, year and
    categories: a description, or a list field of its metadata (credits, languages)."""
    return bool(safe_description(item.text) or details(item))


def shown_facts(ev: Evidence, kind: str) -> list[str]:
    """The facts the model is shown for one text of ``kind`` (``"explanation"`` or ``"draft"``),
    as strings: the pick's title, year, categories, description excerpt and details; an
    explanation's prompt also carries the cited history items' titles and categories. What
    ``support.support`` checks the model's words against."""
    facts = prompt_facts(ev.item)
    out = [facts["title"], str(facts["year"] or ""), *facts["categories"], facts["description"], facts["details"]]
    if kind == "explanation":
        out += [natural_title(h.title) for h in ev.history] + [c for h in ev.history for c in h.categories]
    return [f for f in out if f]


def fact_spans(ev: Evidence, kind: str) -> tuple[str, ...]:
    """The facts a continuation of ``kind`` is made of (``TextJob.spans``: runs of their words
    joined by light connectives, ``engine.span_grammar``): the pick's description excerpt (a
    tag list without its "Tags:") and the entries of each list field shown (one span a field:
    "Al Pacino, Robert De Niro"). Not the categories (Muse's start says them: "a comedy
    comedy" otherwise) nor the cited films' titles (Muse's to write). Every word the model can
    write is then a word of the facts ``shown_facts`` gives the support measure. ``kind``: the
    same spans for both kinds today. () when no phrase of them can be a run
    (``engine.span_grammar`` refuses them): the model then writes freely, its words checked
    after."""
    facts = prompt_facts(ev.item)
    spans = [facts["description"].removeprefix("Tags:").strip()]
    spans += [
        ", ".join(_entries(v)) for _, v in sorted((ev.item.metadata or {}).items()) if isinstance(v, (list, tuple))
    ]
    spans = tuple(dict.fromkeys(s for s in spans if s))
    try:
        span_grammar(spans)
    except ValueError:
        return ()
    return spans


def _entries(value, names: int = NAMES) -> list[str]:
    """A metadata value's entries as the prompt shows them (``catalog.metadata_entries``): a
    list's first ``names``, a text value alone unless blank."""
    if isinstance(value, str) and not value.strip():
        return []
    return [str(v) for v in metadata_entries(value)[:names]]


def shared_details(ev: Evidence) -> list[tuple[str, str]]:
    """``(field, value)`` of the pick's metadata that a cited item has too, fields in name order:
    a text field's value (``("tone", "tense")``), a list field's entries among its first
    ``NAMES`` (``("cast", "Al Pacino")``). [] without cited items."""
    out = []
    for key, value in sorted((ev.item.metadata or {}).items()):
        theirs = {v for h in ev.history for v in _entries((h.metadata or {}).get(key))}
        out += [(key, v) for v in _entries(value) if v in theirs]
    return out


def shared_words(ev: Evidence, n: int = THEME_WORDS) -> list[str]:
    """Up to ``n`` words of the pick's description (lower-case, in order, each once) whose stem
    occurs in a cited item's description: words the support measure counts, of
    ``THEME_LETTERS`` letters or more, not of the pick's title ("robbers" for a train heist
    and a cited bank robbery). What the two share beyond a category, said to the model."""
    theirs = {stem(w) for h in ev.history for w in content_words(safe_description(h.text))}
    title = set(content_words(ev.item.title))
    out: list[str] = []
    for w in content_words(safe_description(ev.item.text)):
        if len(w) >= THEME_LETTERS and w not in title and w not in out and stem(w) in theirs:
            out.append(w)
    return out[:n]


def leads(ev: Evidence, kind: str) -> tuple[str, ...]:
    """How the model's phrases may open after Muse's start (``TextJob.leads``): an explanation's
    start ends with a colon ("...another western:" + " a cynical bounty hunter ..."); a draft's
    with the pick's genre, so a clause of a prose description follows as "... is a western
    where a cynical bounty hunter ...", and a list (tags, credits) as "... is a comedy with
    goats, workplace, silly". (Offered both, the 135M model put "with" before clauses.)"""
    if kind == "explanation":
        return ("",)
    about = safe_description(ev.item.text)
    return (" where",) if about and not about.startswith("Tags:") else (" with",)
