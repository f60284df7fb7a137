"""The OpenAI-compatible chat: ``POST /v1/chat/completions`` (streamed or whole) and
``GET /v1/models``; the translation to and from OpenAI's shapes is ``agent.api.openai_chat``."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from agent.api import openai_chat
from agent.api.protocol import ChatRequest
from agent.api.routes.deps import AgentDep, CallerDep, answer, errors

router = APIRouter(tags=["chat (OpenAI-compatible)"])


@router.post("/v1/chat/completions", responses=errors(400, 403, 413, 422, 502))
async def chat_completions(body: ChatRequest, request: Request, agent: AgentDep, caller: CallerDep):
    """The conversation read, its picks and their texts as one assistant message (``stream``:
    as server-sent events). ``model`` names a served model of ``/v1/models``."""
    caller.check_users([body.user])
    turn = await anyio.to_thread.run_sync(openai_chat.plan_chat, agent, body)
    # sampling settings Muse's fixed decoding does not use: named back
    headers = {"X-Muse-Ignored-Fields": ", ".join(turn.ignored)} if turn.ignored else None
    if body.stream:
        return StreamingResponse(openai_chat.stream(agent, turn), media_type="text/event-stream", headers=headers)
    with agent.metrics.latency.labels("chat").time():
        picked = await answer(request, agent, turn.plan)
    return JSONResponse(openai_chat.completion(picked, turn).model_dump(), headers=headers)


@router.get("/v1/models", responses=errors())
def models(agent: AgentDep, _: CallerDep) -> dict:
    """The model names a chat request may give: Muse and each served ranker adapter."""
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "owned_by": "muse"} for name in openai_chat.model_names(agent)],
    }
