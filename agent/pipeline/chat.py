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
from agent.pipeline.answer import Answer, Ask
from agent.pipeline.grounding import natural_title
from agent.pipeline.intent import Intent
from agent.pipeline.reader import ConversationReader, RequestState
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
# A pointer ends there: "one", punctuation or the end ("more like the second one", "not that"),
# so "something like Last Flight From Kabara" names a film instead of pointing at the last pick.
_POINTER = (
    r"(?:the\s+)?(?P<which>" + "|".join(_ORDINALS) + r"|last|#\d+|number\s+\d+|that|it|this)"
    r"(?:\s+one\b|(?=\s*(?:[,.;!?]|$|\s+(?:please|but|and|though|instead)\b)))"
)
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
    reader: ConversationReader,
    adapter: str | None = None,
    diversity: float = 0.0,
    chosen: Filters | None = None,
    readings: dict | None = None,
    groups: Sequence[str] = (),
) -> tuple[Ask, Intent, RequestState]:
    """The ask for a conversation, from the reader's ``RequestState``: films the user liked or
    asked for more like seed the query (the session's history), films they turned down are
    excluded and pushed away from, hard constraints filter, a count sets ``k``, and every item
    already shown is excluded. ``chosen``: filters the client set explicitly (a page's
    controls); each one it sets wins over what the messages say. ``readings``/``groups``: the
    LLM's readings of turns and the field groups taken from them (``ConversationReader.read``).
    Also returns the reading as an ``Intent`` (the API's ``muse.intent``) and the state itself."""
    state = reader.read(turns.queries, turns.shown, turns.like_ids, turns.exclude_ids, readings, groups)
    c = state.constraints
    if chosen is not None:
        c.categories = chosen.categories or c.categories
        c.year_min = chosen.year_min if chosen.year_min is not None else c.year_min
        c.year_max = chosen.year_max if chosen.year_max is not None else c.year_max
        if c.year_min is not None and c.year_max is not None and c.year_min > c.year_max:  # the client's bound wins
            c.year_min, c.year_max = chosen.year_min, chosen.year_max
    seen = [i for ids in turns.shown for i in ids]
    filters = Filters(
        categories=list(c.categories),
        year_min=c.year_min,
        year_max=c.year_max,
        exclude_ids=list(dict.fromkeys(seen + state.excluded)),
        only_ids=reader.vocabulary.items_for(c),  # the films of the people the request names
    )
    said = {i: "liked" for i in state.ids("liked")} | {i: "asked" for i in state.ids("mentioned") + state.pointed_like}
    ask = Ask(
        user_id,
        state.count or k,
        None if state.unclear else state.query,
        filters,
        diversity,
        adapter,
        state.seeds,
        disliked_ids=list(dict.fromkeys(state.ids("disliked") + state.pointed_exclude)),
        constraints=c,
        preferences=None if state.preferences.empty() else state.preferences,
        said=said,
        notes=notes(state, reader.items),
    )
    # muse.intent: the user's words as read, and the filters that reached retrieval
    intent = Intent(" ".join(turns.queries), list(c.categories), c.year_min, c.year_max, "rules")
    return ask, intent, state


GREETING_REPLY = (
    "Hi! Tell me what you are in the mood for: a genre, a mood, a decade, or films you loved "
    '("I loved Alien and The Thing"). Meanwhile, a few ideas:'
)


def notes(state: RequestState, items: Callable[[Sequence[str]], list[Item]] | None = None) -> list[str]:
    """The lines that open a reply: a question back for a greeting, then what was read (films
    and how the user feels about them, earlier picks pointed at, constraints, comparatives) and
    what cannot be honoured. ``items``: ids -> catalog items, to name the picks pointed at
    ("more like the second one"); without it they go unnamed."""
    out = [GREETING_REPLY] if state.unclear else []
    # "turned down" is true of both "I did not like X" and "..., but not X"
    feel = {"liked": "you liked", "disliked": "you turned down", "seen": "you have seen", "mentioned": "more like"}
    read = [f'{feel[m.sentiment]} "{natural_title(m.title)}"' for m in state.mentions]
    for word, ids in (("more like", state.pointed_like), ("not", state.pointed_exclude)):
        read += [f'{word} "{natural_title(it.title)}"' for it in (items(ids) if items and ids else [])]
    read += state.comparisons + state.constraints.summary()
    read += [f"preferably {p}" for p in state.preferences.summary()]
    if state.count:
        read.append(f"{state.count} picks")
    if read:
        out.append("I read: " + "; ".join(read) + ".")
    if state.unsupported:
        out.append("I could not honour: " + "; ".join(state.unsupported) + ".")
    return out


def picks_text(items: Sequence[Item], reason: str | None = None, notes: Sequence[str] = ()) -> str:
    """The reply's first part, sent as soon as the picks are known: ``1. Title (year) [#id]``
    per pick (the ids let a later turn point back at them); with no picks, why (``reason``).
    ``notes``: lines that come first (``chat.notes``)."""
    head = "".join(f"{n}\n" for n in notes)
    if not items:
        return head + _nothing(reason)
    lines = [head + f"Here are {len(items)} picks for you:\n"]
    for n, item in enumerate(items, 1):
        year = f" ({item.year})" if item.year else ""
        lines.append(f"{n}. {item.title}{year} [#{item.id}]\n")
    return "".join(lines)


def _nothing(reason: str | None) -> str:
    if reason:
        return f"I found nothing that fits: {reason}. Try fewer constraints.\n"
    return "I found nothing that fits; try fewer constraints.\n"


SECTION = {"explanation": "\nWhy:\n", "draft": "\nPitches:\n"}


def text_part(n: int, kind: str, text: str) -> str:
    """One text of pick ``n`` (0-based) as the reply shows it; the first of each kind opens its
    section ("Why:", then "Pitches:")."""
    return (SECTION[kind] if n == 0 else "") + f"{n + 1}. {text}\n"


def degraded_note(answer: Answer) -> str:
    """The line a degraded answer's reply ends with: some texts are templates, and why."""
    return f"\n(Some texts are templates: {answer.degraded_reason or 'the language model was unavailable or late'}.)\n"


def reply_text(answer: Answer) -> str:
    """The whole reply: the same text a stream of this answer sends, part by part."""
    parts = [picks_text([p.item for p in answer.picks], answer.reason, answer.notes)]
    for kind in ("explanation", "draft"):
        parts += [text_part(n, kind, getattr(p, kind)) for n, p in enumerate(answer.picks)]
    if answer.degraded and answer.picks:
        parts.append(degraded_note(answer))
    return "".join(parts)
