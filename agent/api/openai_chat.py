"""The OpenAI-compatible chat layer: a ``ChatRequest`` -> the agent -> a chat completion, whole
or as server-sent events. Any OpenAI client works with ``base_url=.../v1, model="muse"``
(``muse:ADAPTER`` picks a ranker adapter by name). The reply text lists the picks, then why
each suits the reader, then a pitch of each; the same items, with ids, scores, explanations and
drafts, ride along as structured data under ``muse`` (in the response, or in the last chunk of
a stream).

Streaming is real: the picks are the first content chunk, sent as soon as they are known;
then each explanation, then each pitch, as the LLM finishes it (in pick order: a text waits
only for those before it). If the client goes away, the LLM's unfinished work is cancelled.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from agent.api.protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    Choice,
    ChunkChoice,
    ChunkDelta,
    IntentOut,
    ItemBrief,
    MuseChatData,
    RecommendationResponse,
    Usage,
)
from agent.catalog import Item
from agent.llm.engine import UnknownAdapterError
from agent.pipeline.answer import Answer, Plan
from agent.pipeline.chat import build_ask, degraded_note, picks_text, read_turns, reply_text, text_part
from agent.pipeline.generation import KINDS
from agent.pipeline.intent import Intent
from agent.pipeline.recommender import MuseAgent
from retrieval.index import Filters

MODEL = "muse"


def model_names(agent: MuseAgent) -> list[str]:
    return [MODEL] + [f"{MODEL}:{name}" for name in agent.rankers.adapters]


def adapter_of(model: str, agent: MuseAgent) -> str | None:
    """``muse`` -> the configured ranker adapter; ``muse:NAME`` -> NAME (allow-listed)."""
    if model == MODEL:
        return None
    name = model.removeprefix(f"{MODEL}:")
    if model.startswith(f"{MODEL}:") and name in agent.rankers.adapters:
        return name
    raise UnknownAdapterError(model, model_names(agent))


@dataclass
class ChatTurn:
    """One chat request, planned: the picks (texts to come), how its newest message was read,
    the model name it asked for, its fields that had no effect, and, for a user with no history,
    the items to ask them about."""

    plan: Plan
    intent: Intent
    model: str
    ignored: list[str] = field(default_factory=list)
    onboarding: list[Item] = field(default_factory=list)


def structured(answer: Answer, turn: ChatTurn) -> MuseChatData:
    """What ``/v1/recommendations`` returns, plus how the request was read, which of the
    request's fields had no effect (``ChatRequest.ignored_fields``) and the onboarding items."""
    return MuseChatData(
        **RecommendationResponse.of(answer).model_dump(),
        intent=IntentOut.of(turn.intent),
        ignored_fields=list(turn.ignored),
        onboarding=[ItemBrief.of(it) for it in turn.onboarding],
    )


def plan_chat(agent: MuseAgent, request: ChatRequest) -> ChatTurn:
    """The picks for a chat request (no texts yet), how its newest turn was read, and for a user
    with no history the items to ask them about. Items in ``muse.liked`` are stored as likes
    before the picks are planned. Raises the agent's domain errors (bad adapter, no user message, an unknown liked
    item) before anything is streamed."""
    adapter = adapter_of(request.model, agent)
    started = time.perf_counter()
    turns = read_turns([{"role": m.role, "content": m.content or ""} for m in request.messages])
    options = request.options
    chosen = Filters(options.categories, options.year_min, options.year_max)
    ask, intent, _ = build_ask(turns, request.user, options.k, agent.reader, adapter, options.diversity, chosen)
    intent.read_ms = (time.perf_counter() - started) * 1000  # reading only, not the store write below
    if options.liked:  # a new user's answer to muse.onboarding: their history from now on (read by plan)
        agent.users.record_likes(request.user, options.liked)
    plan = agent.plan(ask)
    onboarding = [] if plan.history else agent.users.onboarding()  # a user with no history yet
    return ChatTurn(plan, intent, request.model, request.ignored_fields, onboarding)


def completion(answer: Answer, turn: ChatTurn) -> ChatCompletion:
    """The whole answer as an OpenAI ``chat.completion``."""
    return ChatCompletion(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=turn.model,
        choices=[Choice(message=AssistantMessage(content=reply_text(answer)))],
        usage=Usage.of(answer),
        muse=structured(answer, turn),
    )


class _Chunks:
    """OpenAI ``chat.completion.chunk`` events of one stream, as SSE lines."""

    def __init__(self, model: str):
        self.id, self.created, self.model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), model

    def event(self, delta: ChunkDelta, finish: str | None = None, **last) -> str:
        """One SSE line; ``last``: ``usage`` and ``muse``, on the final chunk only."""
        chunk = ChatCompletionChunk(
            id=self.id,
            object="chat.completion.chunk",
            created=self.created,
            model=self.model,
            choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish)],
            **last,
        )
        return f"data: {chunk.model_dump_json(exclude_unset=True)}\n\n"


async def stream(agent: MuseAgent, turn: ChatTurn) -> AsyncIterator[str]:
    """Server-sent events: the role, the picks, each text in pick order as soon as it and the
    texts before it are written, a final chunk with ``finish_reason`` "stop" and ``muse``, then
    ``data: [DONE]``. Closing the stream early (the client left) cancels the LLM's work."""
    import anyio

    plan = turn.plan
    chunks, cancel = _Chunks(turn.model), threading.Event()
    texts = agent.texts(plan, cancel)
    order = [(n, kind) for kind in KINDS for n in range(len(plan.items))]
    ready: dict[tuple[int, str], str] = {}
    sent = 0
    try:
        yield chunks.event(ChunkDelta(role="assistant", content=""))
        started = time.monotonic()
        yield chunks.event(ChunkDelta(content=picks_text(plan.items, plan.reason, plan.ask.notes)))
        agent.metrics.first_content.observe(time.monotonic() - plan.started)
        while True:
            # Off the event loop: the engine blocks; a client that leaves cancels this await at
            # once (abandon_on_cancel), and `finally` below tells the engine to stop.
            event = await anyio.to_thread.run_sync(next, texts, None, abandon_on_cancel=True)
            if event is None:
                break
            ready[(event.pick, event.kind)] = event.text
            while sent < len(order) and order[sent] in ready:
                n, kind = order[sent]
                yield chunks.event(ChunkDelta(content=text_part(n, kind, ready[order[sent]])))
                sent += 1
        if cancel.is_set():
            return
        answer = await anyio.to_thread.run_sync(agent.finish, plan)
        if answer.degraded and answer.picks:
            yield chunks.event(ChunkDelta(content=degraded_note(answer)))
        agent.metrics.latency.labels("chat_stream").observe(time.monotonic() - started)
        yield chunks.event(ChunkDelta(), "stop", usage=Usage.of(answer), muse=structured(answer, turn))
        yield "data: [DONE]\n\n"
    finally:
        cancel.set()
