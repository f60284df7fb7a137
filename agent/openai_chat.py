"""The OpenAI-compatible chat layer: a ``ChatRequest`` -> the agent -> a chat completion, whole
or as server-sent events. Any OpenAI client works with ``base_url=.../v1, model="muse"``
(``muse:ADAPTER`` picks a ranker adapter by name). The reply text lists the items; the same
items, with ids, scores, explanations and drafts, ride along as structured data under ``muse``
(in the response, or in the last chunk of a stream)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

from agent.chat import build_ask, read_turns, reply_lines
from agent.intent import rule_intent
from agent.llm.engine import UnknownAdapterError
from agent.schemas import ChatRequest, RecommendationResponse
from agent.service import Answer, MuseAgent

MODEL = "muse"


def model_names(agent: MuseAgent) -> list[str]:
    return [MODEL] + [f"{MODEL}:{name}" for name in agent.adapters]


def adapter_of(model: str, agent: MuseAgent) -> str | None:
    """``muse`` -> the configured ranker adapter; ``muse:NAME`` -> NAME (allow-listed)."""
    if model == MODEL:
        return None
    name = model.removeprefix(f"{MODEL}:")
    if model.startswith(f"{MODEL}:") and name in agent.adapters:
        return name
    raise UnknownAdapterError(model, model_names(agent))


def structured(answer: Answer, intent) -> dict:
    """What ``/v1/recommendations`` returns, plus how the request was read."""
    return {**RecommendationResponse.of(answer).model_dump(),
            "intent": {"query": intent.query, "categories": intent.categories, "year_min": intent.year_min,
                       "year_max": intent.year_max, "source": intent.source}}


def answer_chat(agent: MuseAgent, request: ChatRequest) -> tuple[Answer, dict]:
    adapter = adapter_of(request.model, agent)
    turns = read_turns([{"role": m.role, "content": m.content or ""} for m in request.messages])
    deadline = time.monotonic() + agent.settings.llm_deadline_s
    k, diversity = int(request.muse.get("k", 5)), float(request.muse.get("diversity", 0.0))
    ask, intent = build_ask(turns, request.user, k, lambda text: agent.interpret(text, deadline), adapter, diversity)
    answer = agent.recommend(ask)
    if not answer.candidate_ids and intent.source == "llm":
        # The LLM's reading filtered out the whole catalog (a 135M model can misread "the 80s"
        # as 1980-1980): read the request by the rules instead, once.
        agent.metrics.intents.labels("rules_after_empty_llm_reading").inc()
        ask, intent = build_ask(turns, request.user, k, lambda text: rule_intent(text, agent.categories),
                                adapter, diversity)
        answer = agent.recommend(ask)
    return answer, structured(answer, intent)


def completion(answer: Answer, data: dict, model: str) -> dict:
    text = "".join(reply_lines(answer))
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "muse": data,
    }  # fmt: skip


def stream(answer: Answer, data: dict, model: str) -> Iterator[str]:
    """Server-sent events in OpenAI's chunk format. The answer is computed before the stream
    starts (ranking and texts come from batched LLM calls, and an error must still be able to
    become a 4xx), then sent item by item; the last chunk carries ``muse``."""
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}

    def event(delta: dict, finish: str | None = None, **extra) -> str:
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(chunk)}\n\n"

    yield event({"role": "assistant", "content": ""})
    for line in reply_lines(answer):
        yield event({"content": line})
    yield event({}, "stop", muse=data)
    yield "data: [DONE]\n\n"
