"""Grounding: generated text may name only titles it was given.

A text fails the check when it mentions a title that is neither the recommended item's nor one
of the user's history items. "Mentions" means either

- a catalog title appearing verbatim (case-sensitive, word-bounded, punctuation between words
  ignored; one-word titles need six letters or more, so "Heat" does not fire on "heat"; the
  longest title at each place wins, so "The Hunger Games" does not also name "Hunger"), or
- any span in double quotes (the prompts ask the model to quote titles), which must be one of
  the allowed titles: this catches titles the model made up, which no catalog lookup could;
- the name after "titled", "entitled" or "a film/movie called" (an unquoted made-up title).

A text must also cite at least one of the titles it is asked to (an explanation: a history item
it was given as evidence; a draft: the item itself). Such failures have their own reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_ARTICLE_AFTER = re.compile(r"^(.*), (The|A|An|Les|La|Le|L'|Il|Das|Der|Die|El)$")
_QUOTED = re.compile(r"[\"“”]([^\"“”]{2,120})[\"“”]")
# Words of a title or a text, inner hyphens and dots kept ("Spider-Man", "E.T"); other
# punctuation is not part of a title's identity ("O Brother, Where Art Thou?").
_TOKENS = re.compile(r"[\w'’&]+(?:[-.][\w'’&]+)*")
_NAMED = re.compile(
    r"\b(?:titled|entitled|(?:film|movie|picture|sequel|one)(?: is| was)? called)\s+"
    r"((?:[A-Z0-9][\w'’&-]*)(?:\s+(?:[A-Z0-9][\w'’&-]*|of|the|a|an|and|in|on|at|to))*)"
)


def natural_title(title: str) -> str:
    """MovieLens writes "Matrix, The"; people (and models) write "The Matrix"."""
    m = _ARTICLE_AFTER.match(title.strip())
    return f"{m[2]} {m[1]}" if m else title.strip()


def normalize(title: str) -> str:
    """Lower-case words of the natural title, a trailing ``(year)`` and ellipsis dropped."""
    title = re.sub(r"\s*\(\d{4}\)\s*$", "", natural_title(title)).rstrip("…. ")
    return " ".join(re.findall(r"\w+", title.lower()))


@dataclass
class Verdict:
    ok: bool
    reason: str = ""  # "unknown_title: X", "not_cited" or ""


def canonical(text: str) -> str:
    """A title or a phrase as its words joined by single spaces (see ``_TOKENS``)."""
    return " ".join(_TOKENS.findall(text))


class GroundingCheck:
    def __init__(self, catalog_titles: Iterable[str]):
        self.titles: set[str] = set()  # canonical forms, as written and in natural order
        self.max_words = 1
        self.add(catalog_titles)

    def add(self, titles: Iterable[str]) -> None:
        """Catalog titles (at start-up, and of items upserted later)."""
        for raw in titles:
            for form in {canonical(raw), canonical(natural_title(raw))}:
                words = len(form.split())
                if words > 1 or len(form) >= 6:
                    self.titles.add(form)
                    self.max_words = max(self.max_words, words)

    def mentioned(self, text: str) -> set[str]:
        """Catalog titles found verbatim in ``text``: the longest match at each position, and
        the words of a match are not searched again ("The Hunger Games" does not also name
        "Hunger"). A one-word title next to another capitalized word is part of a name, not a
        title ("also written by Michael Crichton" names no film "Michael")."""
        tokens = list(_TOKENS.finditer(text))
        words = [t.group() for t in tokens]
        found: set[str] = set()
        start = 0
        while start < len(words):
            step = 1
            for n in range(min(self.max_words, len(words) - start), 0, -1):
                phrase = " ".join(words[start : start + n])
                if phrase in self.titles:
                    if n > 1 or not self._in_name(text, tokens, start):
                        found.add(phrase)
                    step = n
                    break
            start += step
        return found

    @staticmethod
    def _in_name(text: str, tokens: list, i: int) -> bool:
        """Whether token ``i`` sits right beside another capitalized word (only a space between
        them; not the text's first word): "Michael Crichton", not "Gladiator, Toy Story"."""

        def joined(a: int, b: int) -> bool:
            return not text[tokens[a].end() : tokens[b].start()].strip()

        after = i + 1 < len(tokens) and tokens[i + 1].group()[:1].isupper() and joined(i, i + 1)
        before = i > 1 and tokens[i - 1].group()[:1].isupper() and tokens[i - 1].group() != "I" and joined(i - 1, i)
        return after or before

    def foreign_titles(self, text: str, allowed: Iterable[str]) -> list[str]:
        """Titles named in ``text`` (catalog titles verbatim, quoted spans, the name after
        "titled" or "a film called") that are not among ``allowed``."""
        allowed_norm = {normalize(t) for t in allowed}
        named = sorted(self.mentioned(text)) + _QUOTED.findall(text) + [m.strip() for m in _NAMED.findall(text)]
        out = []
        for title in named:
            norm = normalize(title)
            if norm and not any(norm == a or (len(norm) >= 8 and a.startswith(norm)) for a in allowed_norm):
                out.append(title)
        return list(dict.fromkeys(out))

    def check(self, text: str, allowed: Iterable[str], must_cite: Iterable[str] = ()) -> Verdict:
        foreign = self.foreign_titles(text, allowed)
        if foreign:
            return Verdict(False, f"unknown_title: {foreign[0]}")
        cite = [normalize(t) for t in must_cite]
        if cite and not any(c and c in " ".join(re.findall(r"\w+", text.lower())) for c in cite):
            return Verdict(False, "not_cited")
        return Verdict(True)
