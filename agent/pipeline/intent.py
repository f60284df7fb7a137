"""A natural-language request -> retrieval filters plus a query text.

The LLM is asked first, with a JSON schema (vLLM enforces it; the in-process engine does not),
and its answer is validated against the catalog and against the request itself:

- a category the catalog does not have, or one the request never mentions (by name or a
  common word for it);
- years when the request names no year, decade or era;
- a year range that is upside down or out of range; anything unparsable.

Any of these rejects the whole answer, and the rule-based parser below answers instead. (The
packaged 135M model, schema-constrained, tends to fill every field: "a gripping thriller"
came back as Action/Animation/Comedy from 2022. Constraints the user did not ask for would
silently empty or skew the answer, so they need evidence in the text.) The query text is
always the user's own words: the retriever embeds them. Either way the result says where it came
from, so the metrics can count how often the LLM's reading was usable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from agent.pipeline.prompts import render

YEAR_LOW, YEAR_HIGH = 1870, 2100


def intent_schema(categories: Collection[str]) -> dict:
    """The JSON schema of a reading. Categories are an enum of the catalog's and at most three,
    so constrained decoding (vLLM) can neither invent a genre nor ramble through the list."""
    return {
        "type": "object",
        "properties": {
            "query": {"type": "string", "maxLength": 120},
            "categories": {"type": "array", "items": {"enum": sorted(categories)}, "maxItems": 3},
            "year_min": {"type": ["integer", "null"]},
            "year_max": {"type": ["integer", "null"]},
        },
        "required": ["query", "categories", "year_min", "year_max"],
        "additionalProperties": False,
    }


INTENT_FIELDS = ("query", "categories", "year_min", "year_max")

# Everyday words for catalog categories (MovieLens genres and the demo catalog's).
SYNONYMS = {
    "funny": "Comedy",
    "comedies": "Comedy",
    "comedy": "Comedy",
    "light": "Comedy",
    "scary": "Horror",
    "horror": "Horror",
    "romantic": "Romance",
    "romance": "Romance",
    "sci-fi": "Sci-Fi",
    "science fiction": "Sci-Fi",
    "space": "Sci-Fi",
    "animated": "Animation",
    "cartoon": "Animation",
    "kids": "Children",
    "family": "Children",
    "thriller": "Thriller",
    "suspense": "Thriller",
    "war": "War",
    "western": "Western",
    "documentary": "Documentary",
    "musical": "Musical",
    "crime": "Crime",
    "mystery": "Mystery",
    "fantasy": "Fantasy",
    "action": "Action",
    "adventure": "Adventure",
    "drama": "Drama",
    "noir": "Film-Noir",
}

_DECADE = re.compile(r"\b(?:(19|20)?(\d)0)'?s\b")
_BETWEEN = re.compile(r"\b(?:(?:between|from)\s+(\d{4})\s*(?:and|to|-|–)|(\d{4})\s*(?:to|-|–))\s*(\d{4})\b")
# "before 1980" and "after 2005" leave the year out; "until 1980" and "since 2010" keep it.
_BEFORE = re.compile(r"\b(?:(before|pre)|until|up to|through)[\s-]+(\d{4})\b")
_AFTER = re.compile(r"\b(?:(after|post)|since|from)[\s-]+(\d{4})\b(?!\s*(?:-|to|and)\s*\d)")
_FROM_YEAR = re.compile(r"\b(?:from|in)\s+(\d{4})\b")
_TIME_CUE = re.compile(r"\d|\b(?:decade|century|era|old|older|new|newer|recent|classic|modern)\b")


@dataclass
class Intent:
    query: str = ""
    categories: list[str] = field(default_factory=list)
    year_min: int | None = None
    year_max: int | None = None
    source: str = "rules"  # "llm" or "rules"
    llm_error: str = ""  # why the LLM's reading was not used, when it was asked


def rule_intent(text: str, categories: Collection[str]) -> Intent:
    """Years, decades and category words found by patterns; the request itself is the query."""
    lower = text.lower()
    intent = Intent(query=text.strip())
    if m := _BETWEEN.search(lower):
        intent.year_min, intent.year_max = sorted((int(m[1] or m[2]), int(m[3])))
    elif m := _DECADE.search(lower):
        century = int(m[1]) * 100 if m[1] else (1900 if int(m[2]) >= 3 else 2000)
        intent.year_min = century + int(m[2]) * 10
        intent.year_max = intent.year_min + 9
    else:
        if m := _BEFORE.search(lower):
            intent.year_max = int(m[2]) - (1 if m[1] else 0)
        if (m := _FROM_YEAR.search(lower)) and not re.search(r"\bfrom\s+\d{4}\s+on", lower):
            intent.year_min = intent.year_max = int(m[1])  # "from 1995", "in 1995": that year
        elif m := _AFTER.search(lower):
            intent.year_min = int(m[2]) + (1 if m[1] else 0)
    known = {c.lower(): c for c in categories}
    found: list[str] = []
    for word, category in SYNONYMS.items():
        if re.search(rf"\b{re.escape(word)}\b", lower) and category.lower() in known:
            found.append(known[category.lower()])
    for lowered, category in known.items():
        if re.search(rf"\b{re.escape(lowered)}\b", lower):
            found.append(category)
    intent.categories = sorted(set(found))
    return intent


def validate_llm_intent(reply: str, categories: Collection[str], text: str) -> Intent:
    """Parse and check the LLM's JSON reply; raises ValueError naming what is wrong."""
    try:
        data = json.loads(reply)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e}") from None
    if not isinstance(data, dict) or set(data) - set(INTENT_FIELDS):
        raise ValueError("not an object with the schema's fields")
    known = {c.lower(): c for c in categories}
    cats = data.get("categories") or []
    if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
        raise ValueError("categories is not a list of strings")
    unknown = [c for c in cats if c.lower() not in known]
    if unknown:
        raise ValueError(f"categories not in the catalog: {unknown}")
    years = [data.get("year_min"), data.get("year_max")]
    for y in years:
        if y is not None and (not isinstance(y, int) or not YEAR_LOW <= y <= YEAR_HIGH):
            raise ValueError(f"year {y!r} out of range")
    if None not in years and years[0] > years[1]:
        raise ValueError(f"year_min {years[0]} is after year_max {years[1]}")
    if not isinstance(data.get("query"), str):
        raise TypeError("query is not a string")
    lower = text.lower()
    unasked = [c for c in cats if not _mentioned(c, lower)]
    if unasked:
        raise ValueError(f"categories {unasked} are not in the request")
    if years != [None, None] and not _TIME_CUE.search(lower):
        raise ValueError(f"years {years} but the request names no time")
    return Intent(
        query=text.strip(),
        categories=sorted({known[c.lower()] for c in cats}),
        year_min=years[0],
        year_max=years[1],
        source="llm",
    )


def _mentioned(category: str, lower_text: str) -> bool:
    words = [category.lower()] + [w for w, c in SYNONYMS.items() if c.lower() == category.lower()]
    return any(re.search(rf"\b{re.escape(w)}\b", lower_text) for w in words)


def parse_intent(text: str, categories: Collection[str], ask_llm: Callable[[list, dict], str] | None) -> Intent:
    """The LLM's validated reading of ``text``, else the rules'. ``ask_llm(conversation, schema)``
    sends one conversation under ``intent_schema`` and returns the reply; it may raise."""
    if ask_llm is not None:
        conversation = [
            {"role": "system", "content": render("intent_system.jinja", categories=sorted(categories))},
            {"role": "user", "content": text},
        ]
        try:
            return validate_llm_intent(ask_llm(conversation, intent_schema(categories)), categories, text)
        except (RuntimeError, ValueError, TypeError) as e:  # LLM down or a bad reading: rules
            intent = rule_intent(text, categories)
            intent.llm_error = f"{type(e).__name__}: {e}"[:200]
            return intent
    return rule_intent(text, categories)
