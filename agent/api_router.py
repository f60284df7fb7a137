"""HTTP routes: thin, each one parses, calls the agent, and shapes the answer.

Domain errors raised by the agent become HTTP errors in ``agent.app`` only.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from agent import openai_chat
from agent.catalog import Interaction, Item
from agent.schemas import (
    ChatRequest,
    EventOut,
    FeedbackRequest,
    FeedbackResponse,
    HistoryResponse,
    ItemsRequest,
    RecommendationRequest,
    RecommendationResponse,
    ServeAdapterRequest,
    ServeAdapterResponse,
)
from agent.service import Answer, Ask, MuseAgent, Plan, RequestCancelled
from retrieval.index import Filters

router = APIRouter()


def get_agent(request: Request) -> MuseAgent:
    agent = getattr(request.app.state, "agent", None)
    if agent is None:
        raise HTTPException(503, "Muse is starting")
    return agent


AgentDep = Annotated[MuseAgent, Depends(get_agent)]


async def _watch_disconnect(request: Request, cancel: threading.Event, every: float = 0.1) -> None:
    """Set ``cancel`` when the client closes the connection (the LLM's work is then dropped)."""
    while not cancel.is_set():
        if await request.is_disconnected():
            cancel.set()
            return
        await anyio.sleep(every)


async def _answer(request: Request, agent: MuseAgent, plan: Plan) -> Answer:
    """Every text of ``plan`` (off the event loop), the impression logged; the engine's work is
    cancelled if the client goes away first (``RequestCancelled``)."""
    cancel = threading.Event()

    def run() -> Answer:
        for _ in agent.texts(plan, cancel):
            pass
        if cancel.is_set():
            raise RequestCancelled("the client closed the connection")
        return agent.finish(plan)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_watch_disconnect, request, cancel)
        try:
            return await anyio.to_thread.run_sync(run, abandon_on_cancel=True)
        finally:
            cancel.set()
            tasks.cancel_scope.cancel()


@router.post("/v1/recommendations", response_model=RecommendationResponse)
async def recommend(body: RecommendationRequest, request: Request, agent: AgentDep) -> RecommendationResponse:
    f = body.filters
    ask = Ask(body.user_id, body.k, body.query, Filters(f.categories, f.year_min, f.year_max, f.exclude_ids),
              body.diversity, body.adapter)
    with agent.metrics.latency.labels("recommendations").time():
        plan = await anyio.to_thread.run_sync(agent.plan, ask)
        answer = await _answer(request, agent, plan)
    return RecommendationResponse.of(answer)


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatRequest, request: Request, agent: AgentDep):
    plan, intent = await anyio.to_thread.run_sync(openai_chat.plan_chat, agent, body)
    ignored = body.ignored_fields  # sampling settings Muse's fixed decoding does not use: named back
    headers = {"X-Muse-Ignored-Fields": ", ".join(ignored)} if ignored else None
    if body.stream:
        return StreamingResponse(openai_chat.stream(agent, plan, intent, body.model, ignored),
                                 media_type="text/event-stream", headers=headers)
    with agent.metrics.latency.labels("chat").time():
        answer = await _answer(request, agent, plan)
    return JSONResponse(openai_chat.completion(answer, intent, body.model, ignored), headers=headers)


@router.get("/v1/models")
def models(agent: AgentDep) -> dict:
    return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "muse"}
                                       for name in openai_chat.model_names(agent)]}


@router.post("/v1/feedback", response_model=FeedbackResponse)
def feedback(body: FeedbackRequest, agent: AgentDep) -> FeedbackResponse:
    now = time.time()
    events = [Interaction(e.user_id, e.item_id, e.timestamp if e.timestamp is not None else now, e.kind,
                          e.value, key=e.idempotency_key, impression_id=e.impression_id)
              for e in body.events]
    new, duplicates = agent.add_feedback(events)
    return FeedbackResponse(accepted=new, duplicates=duplicates)


@router.post("/v1/items")
def upsert_items(body: ItemsRequest, agent: AgentDep) -> dict:
    items = [Item(i.id, i.title, i.text, tuple(i.categories), i.year, i.metadata) for i in body.items]
    return agent.upsert_items(items)


@router.get("/v1/users/{user_id}/history", response_model=HistoryResponse)
def history(user_id: str, agent: AgentDep) -> HistoryResponse:
    if not agent.store.has_user(user_id):
        raise HTTPException(404, f"unknown user {user_id!r}")
    events = [EventOut(item_id=e.item_id, kind=e.kind, value=e.value, timestamp=e.timestamp,
                       impression_id=e.impression_id) for e in agent.history(user_id)]
    return HistoryResponse(user_id=user_id, events=events)


@router.delete("/v1/users/{user_id}")
def forget(user_id: str, agent: AgentDep) -> dict:
    deleted = agent.forget(user_id)
    if not any(deleted.values()):
        raise HTTPException(404, f"unknown user {user_id!r}")
    return {"user_id": user_id, "deleted": deleted}


@router.post("/v1/adapters/serve", response_model=ServeAdapterResponse)
def serve_adapter(body: ServeAdapterRequest, agent: AgentDep) -> ServeAdapterResponse:
    """Switch (or split) ranker traffic to a registered adapter, loading it into the running LLM
    server if it is new. `muse finetune promote --url` calls this after a promotion."""
    return ServeAdapterResponse(**agent.serve_adapter(body.name, body.split))


@router.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> Response:
    """200 once the store is open and every LLM stage in use has answered its warm-up request;
    503 (with the reason) before. After that, an LLM marked down is reported, still 200: the
    answers are then degraded, not refused."""
    agent = getattr(request.app.state, "agent", None)
    if agent is None:
        return Response(json.dumps({"ready": False, "reason": "starting"}), 503, media_type="application/json")
    if not agent.warmed.is_set():
        reason = "warming up the LLM" + (f" (last try: {agent.warm_error})" if agent.warm_error else "")
        return Response(json.dumps({"ready": False, "reason": reason}), 503, media_type="application/json")
    body = {"ready": True, "llm": "up" if agent.gate.available() else "down (answers degraded)",
            "items": agent.store.counts()["items"], "ranker_adapter": agent.default_adapter,
            "rankers_in_use": agent.rankers_in_use()}
    return Response(json.dumps(body), 200, media_type="application/json")


@router.get("/metrics")
def metrics(agent: AgentDep) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(agent.metrics.registry), media_type=CONTENT_TYPE_LATEST)
