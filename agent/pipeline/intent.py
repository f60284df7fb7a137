"""A request's words -> the category words, years and decades the patterns find, plus the
words themselves as the query text (the retriever embeds them).

The conversation reader (``agent.pipeline.reader``) reads with these patterns among its rules.
(An LLM reading of the request into these fields was tried and refused by its own checks 50
times in 50, docs/llm-serving.md; it is gone, and the LLM reader of issue 23,
``agent.pipeline.llm_reader``, reads the whole conversation instead.)
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field

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
    source: str = "rules"  # who read it (the API reports it)
    read_ms: float = 0.0  # how long reading the conversation took on the server, milliseconds


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
