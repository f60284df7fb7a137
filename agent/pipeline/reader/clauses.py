"""Clauses of a message, whether a negator opens the one a word sits in, and the sentiment the
words around a named film give it."""

from __future__ import annotations

import re

from agent.pipeline.reader.lexicon import _CLAUSE, _LIKE_THIS, _NEGATED, _SENTENCE, SENTIMENT_CUES


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
