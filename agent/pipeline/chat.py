"""Multi-turn chat: the messages of a conversation -> one ``Ask``; an ``Answer`` -> reply text.

Muse's replies list items as ``1. Title (year) [#id]``, so a later turn can point back at them:
"more like the second one" makes that item the newest history item of the query, "not that
one" excludes it, and every item already shown in the conversation is excluded (people asking
again want new things). Filters come from the newest turn that states them; the query text
gathers what every user turn asked for ("something light from the 90s", then "darker").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agent.catalog import InvalidRequestError, Item
from agent.pipeline.intent import Intent
from agent.pipeline.service import Answer, Ask
from retrieval.index import Filters

_SHOWN = re.compile(r"\[#([^\]\s]+)\]")
_ORDINALS = {
    "first": 0,
    "1st": 0,
    "second": 1,
    "2nd": 1,
    "third": 2,
    "3rd": 2,
    "fourth": 3,
    "4th": 3,
    "fifth": 4,
    "5th": 4,
    "sixth": 5,
    "6th": 5,
    "seventh": 6,
    "eighth": 7,
    "ninth": 8,
    "tenth": 9,
}
_POINTER = r"(?:the\s+)?(?P<which>" + "|".join(_ORDINALS) + r"|last|#\d+|number\s+\d+|that|it|this)(?:\s+one)?"
_MORE_LIKE = re.compile(r"\b(?:more|others?|something|anything)\s+like\s+" + _POINTER, re.IGNORECASE)
_NOT = re.compile(r"\b(?:not|no|without|except|drop|skip)\s+" + _POINTER, re.IGNORECASE)


@dataclass
class Turns:
    """What the conversation so far asks for."""

    text: str  # the newest user message, pointers removed
    queries: list[str]  # every user message, pointers removed, oldest first
    shown: list[list[str]]  # item ids of each earlier Muse reply, oldest first
    like_ids: list[str] = field(default_factory=list)
    exclude_ids: list[str] = field(default_factory=list)


def _resolve(which: str, last: list[str]) -> str | None:
    which = which.lower()
    if not last:
        return None
    if which in _ORDINALS:
        n = _ORDINALS[which]
    elif which == "last":
        n = len(last) - 1
    elif which in ("that", "it", "this"):
        n = 0  # with no ordinal, the top pick of the last reply
    else:
        n = int(re.sub(r"\D", "", which)) - 1
    return last[n] if 0 <= n < len(last) else None


def read_turns(messages: Sequence[dict]) -> Turns:
    user = [m["content"] for m in messages if m["role"] == "user"]
    if not user:
        raise InvalidRequestError("the conversation has no user message")
    shown = [_SHOWN.findall(m["content"]) for m in messages if m["role"] == "assistant"]
    shown = [s for s in shown if s]
    last = shown[-1] if shown else []
    newest = user[-1]
    like, exclude = [], []
    for pattern, bucket in ((_MORE_LIKE, like), (_NOT, exclude)):
        for m in pattern.finditer(newest):
            if (item := _resolve(m["which"], last)) is not None:
                bucket.append(item)

    def strip(text: str) -> str:
        return " ".join(_NOT.sub(" ", _MORE_LIKE.sub(" ", text)).split()).strip(" ,;.-")

    return Turns(strip(newest), [q for q in map(strip, user) if q], shown, like, exclude)


def build_ask(
    turns: Turns,
    user_id: str,
    k: int,
    interpret: Callable[[str], Intent],
    adapter: str | None = None,
    diversity: float = 0.0,
    chosen: Filters | None = None,
) -> tuple[Ask, Intent]:
    """The newest turn's intent; filters fall back to earlier turns' when it states none.
    ``chosen``: filters the client set explicitly (a page's controls); each one it sets wins
    over what the messages say."""
    intents = [interpret(q) for q in turns.queries] or [Intent()]
    newest = intents[-1]
    categories = next((i.categories for i in reversed(intents) if i.categories), [])
    year_min = next((i.year_min for i in reversed(intents) if i.year_min is not None), None)
    year_max = next((i.year_max for i in reversed(intents) if i.year_max is not None), None)
    if year_min is not None and year_max is not None and year_min > year_max:  # turns disagree: newest wins
        year_min, year_max = newest.year_min, newest.year_max
    if chosen is not None:
        categories = chosen.categories or categories
        year_min = chosen.year_min if chosen.year_min is not None else year_min
        year_max = chosen.year_max if chosen.year_max is not None else year_max
        if year_min is not None and year_max is not None and year_min > year_max:  # the client's bound wins
            year_min, year_max = chosen.year_min, chosen.year_max
    seen = [i for ids in turns.shown for i in ids]
    filters = Filters(
        categories=categories,
        year_min=year_min,
        year_max=year_max,
        exclude_ids=list(dict.fromkeys(seen + turns.exclude_ids)),
    )
    query = " ".join(i.query for i in intents if i.query) or None
    return Ask(user_id, k, query, filters, diversity, adapter, turns.like_ids), newest


def picks_text(items: Sequence[Item], reason: str | None = None) -> str:
    """The reply's first part, sent as soon as the picks are known: ``1. Title (year) [#id]``
    per pick (the ids let a later turn point back at them); with no picks, why (``reason``)."""
    if not items:
        return (
            f"I found nothing that fits: {reason}. Try fewer constraints.\n"
            if reason
            else "I found nothing that fits; try fewer constraints.\n"
        )
    lines = [f"Here are {len(items)} picks for you:\n"]
    for n, item in enumerate(items, 1):
        year = f" ({item.year})" if item.year else ""
        lines.append(f"{n}. {item.title}{year} [#{item.id}]\n")
    return "".join(lines)


SECTION = {"explanation": "\nWhy:\n", "draft": "\nPitches:\n"}


def text_part(n: int, kind: str, text: str) -> str:
    """One text of pick ``n`` (0-based) as the reply shows it; the first of each kind opens its
    section ("Why:", then "Pitches:")."""
    return (SECTION[kind] if n == 0 else "") + f"{n + 1}. {text}\n"


DEGRADED_NOTE = "\n(Some texts are templates: the language model was unavailable or late.)\n"


def reply_text(answer: Answer) -> str:
    """The whole reply: the same text a stream of this answer sends, part by part."""
    parts = [picks_text([p.item for p in answer.picks], answer.reason)]
    for kind in ("explanation", "draft"):
        parts += [text_part(n, kind, getattr(p, kind)) for n, p in enumerate(answer.picks)]
    if answer.degraded and answer.picks:
        parts.append(DEGRADED_NOTE)
    return "".join(parts)
