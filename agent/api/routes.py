"""HTTP routes: thin, each one parses, calls the agent, and shapes the answer.

Domain errors raised by the agent become HTTP errors in ``agent.api.app`` only. Every route but
``/healthz`` and ``/readyz`` names its caller (``CallerDep``: an API key when ``MUSE_AUTH=keys``);
routes that act for a user check the caller may act for that user, and the catalog, adapter,
deletion and metrics routes need the admin scope (``AdminDep``).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from agent.api import openai_chat
from agent.api.auth import Caller
from agent.api.protocol import (
    CatalogResponse,
    ChatRequest,
    EventOut,
    FeedbackRequest,
    FeedbackResponse,
    ForgetResponse,
    HistoryResponse,
    ItemBrief,
    ItemsRequest,
    OnboardingResponse,
    RecommendationRequest,
    RecommendationResponse,
    ServeAdapterRequest,
    ServeAdapterResponse,
    UserOut,
    UsersResponse,
)
from agent.catalog import Interaction, Item
from agent.pipeline.answer import Answer, Ask, Plan
from agent.pipeline.llm_gate import RequestCancelled
from agent.pipeline.onboarding import ONBOARDING_ITEMS
from agent.pipeline.service import MuseAgent
from retrieval.index import Filters

router = APIRouter()


def get_agent(request: Request) -> MuseAgent:
    agent = getattr(request.app.state, "agent", None)
    if agent is None:
        raise HTTPException(503, "Muse is starting")
    return agent


AgentDep = Annotated[MuseAgent, Depends(get_agent)]

# Declares the bearer scheme in the OpenAPI document; the header itself is read by KeyChecker,
# so that a missing and a malformed header each get their own message.
_bearer = HTTPBearer(auto_error=False, description="an API key from `muse keys create` (MUSE_AUTH=keys)")


def get_caller(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Caller:
    keys = getattr(request.app.state, "keys", None)
    if keys is None:
        raise HTTPException(503, "Muse is starting")
    return keys.caller(request.headers.get("authorization"))


CallerDep = Annotated[Caller, Depends(get_caller)]


def require_admin(caller: CallerDep, request: Request) -> Caller:
    caller.check_admin(f"{request.method} {request.url.path}")
    return caller


AdminDep = Annotated[Caller, Depends(require_admin)]


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
async def recommend(
    body: RecommendationRequest, request: Request, agent: AgentDep, caller: CallerDep
) -> RecommendationResponse:
    caller.check_users([body.user_id])
    f = body.filters
    ask = Ask(
        body.user_id,
        body.k,
        body.query,
        Filters(f.categories, f.year_min, f.year_max, f.exclude_ids),
        body.diversity,
        body.adapter,
    )
    with agent.metrics.latency.labels("recommendations").time():
        plan = await anyio.to_thread.run_sync(agent.plan, ask)
        answer = await _answer(request, agent, plan)
    return RecommendationResponse.of(answer)


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatRequest, request: Request, agent: AgentDep, caller: CallerDep):
    caller.check_users([body.user])
    turn = await anyio.to_thread.run_sync(openai_chat.plan_chat, agent, body)
    # sampling settings Muse's fixed decoding does not use: named back
    headers = {"X-Muse-Ignored-Fields": ", ".join(turn.ignored)} if turn.ignored else None
    if body.stream:
        return StreamingResponse(openai_chat.stream(agent, turn), media_type="text/event-stream", headers=headers)
    with agent.metrics.latency.labels("chat").time():
        answer = await _answer(request, agent, turn.plan)
    return JSONResponse(openai_chat.completion(answer, turn).model_dump(), headers=headers)


@router.get("/v1/models")
def models(agent: AgentDep, _: CallerDep) -> dict:
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "owned_by": "muse"} for name in openai_chat.model_names(agent)],
    }


@router.post("/v1/feedback", response_model=FeedbackResponse)
def feedback(body: FeedbackRequest, agent: AgentDep, caller: CallerDep) -> FeedbackResponse:
    caller.check_users(e.user_id for e in body.events)  # all or nothing: one foreign user fails the batch
    now = time.time()
    events = [
        Interaction(
            e.user_id,
            e.item_id,
            e.timestamp if e.timestamp is not None else now,
            e.kind,
            e.value,
            key=e.idempotency_key,
            impression_id=e.impression_id,
        )
        for e in body.events
    ]
    new, duplicates = agent.add_feedback(events)
    return FeedbackResponse(accepted=new, duplicates=duplicates)


@router.post("/v1/items")
def upsert_items(body: ItemsRequest, agent: AgentDep, _: AdminDep) -> dict:
    items = [Item(i.id, i.title, i.text, tuple(i.categories), i.year, i.metadata) for i in body.items]
    return agent.upsert_items(items)


@router.get("/v1/users/{user_id}/history", response_model=HistoryResponse)
def history(user_id: str, agent: AgentDep, caller: CallerDep) -> HistoryResponse:
    caller.check_users([user_id])
    events = [
        EventOut(
            item_id=e.item_id,
            title=title,
            kind=e.kind,
            value=e.value,
            timestamp=e.timestamp,
            impression_id=e.impression_id,
        )
        for e, title in agent.users.titled_history(user_id)
    ]
    return HistoryResponse(user_id=user_id, events=events)


@router.get("/v1/users", response_model=UsersResponse)
def users(
    agent: AgentDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    after: Annotated[str | None, Query(max_length=128, description="list the users after this id")] = None,
) -> UsersResponse:
    """The users with events, in id order, a page of up to ``limit`` after ``after``: every one
    for an admin key, a client key's own (filtered before the page is cut)."""
    counts = agent.users.listing(limit, users=None if caller.is_admin else caller.users, after=after)
    return UsersResponse(
        users=[UserOut(user_id=u, events=n) for u, n in counts],
        next_after=counts[-1][0] if len(counts) == limit else None,
    )


@router.get("/v1/catalog", response_model=CatalogResponse)
def catalog(agent: AgentDep, _: CallerDep) -> CatalogResponse:
    """The catalog's size, categories and year range (what a page's filters offer)."""
    n, categories, year_min, year_max = agent.catalog_summary()
    return CatalogResponse(items=n, categories=categories, year_min=year_min, year_max=year_max)


@router.get("/v1/onboarding", response_model=OnboardingResponse)
def onboarding(
    agent: AgentDep, _: CallerDep, k: Annotated[int, Query(ge=1, le=50)] = ONBOARDING_ITEMS
) -> OnboardingResponse:
    """Items to ask a new user about, spread over categories and popularity (chosen by code)."""
    return OnboardingResponse(items=[ItemBrief.of(it) for it in agent.users.onboarding(k)])


@router.delete("/v1/users/{user_id}", response_model=ForgetResponse)
def forget(user_id: str, agent: AgentDep, _: AdminDep) -> ForgetResponse:
    """Forget a user: their events, impressions and rows of exported training data are deleted;
    the answer names the trained weights that were fitted on them (until retrained)."""
    gone = agent.users.forget(user_id)
    return ForgetResponse(
        user_id=user_id, deleted=gone.deleted, exported_rows=gone.exported_rows, in_model_weights=gone.in_model_weights
    )


@router.post("/v1/adapters/serve", response_model=ServeAdapterResponse)
def serve_adapter(body: ServeAdapterRequest, agent: AgentDep, _: AdminDep) -> ServeAdapterResponse:
    """Switch (or split) ranker traffic to a registered adapter, loading it into the running LLM
    server if it is new. `muse finetune promote --url` calls this after a promotion."""
    return ServeAdapterResponse(**agent.rankers.serve(body.name, body.split))


@router.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(
    request: Request,
    require: Annotated[
        Literal["llm"] | None,
        Query(description="`llm`: also 503 while the LLM is warming up or down (texts would be templates)"),
    ] = None,
) -> Response:
    """Readiness, one rule (docs/service.md): 200 once the store is open and retrieval has
    answered once, since from then on every route answers (degraded while the LLM is not up);
    503 with the reason before. The body says the LLM's state (``MuseAgent.llm_state``). With
    ``require=llm``, also 503 while that state is not ``up``: for a caller that wants LLM texts."""
    agent = getattr(request.app.state, "agent", None)

    def not_ready(reason: str) -> Response:
        return Response(json.dumps({"ready": False, "reason": reason}), 503, media_type="application/json")

    if agent is None:
        return not_ready("starting")
    last_try = f" (last try: {agent.warm_error})" if agent.warm_error else ""
    if not agent.retrieval_ready.is_set():
        return not_ready("loading the retrieval index" + last_try)
    llm = agent.llm_state()
    if require == "llm" and llm != "up":
        return not_ready("this service runs without an LLM" if llm == "none" else f"the LLM is {llm}" + last_try)
    body = {
        "ready": True,
        "llm": llm if llm in ("up", "none") else f"{llm} (answers degraded)",
        "items": agent.catalog_summary()[0],
        "ranker_adapter": agent.rankers.default,
        "rankers_in_use": agent.rankers.in_use(),
        "llm_answers_in_flight": f"{agent.admission.in_flight} of {agent.admission.limit}",
    }
    replicas = getattr(agent.gate.engine, "status", None)  # several vLLM servers (MUSE_LLM_URL list)
    if replicas is not None:
        body["llm_replicas"] = replicas()
    return Response(json.dumps(body), 200, media_type="application/json")


@router.get("/metrics")
def metrics(agent: AgentDep, _: AdminDep) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(agent.metrics.registry), media_type=CONTENT_TYPE_LATEST)
