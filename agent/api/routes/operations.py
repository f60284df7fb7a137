"""Operations: liveness, readiness (one rule: docs/service.md) and Prometheus metrics."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from agent.api.routes.deps import AdminDep, AgentDep, errors

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict:
    """200 while the process answers."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={**errors(422, caller=False), 503: {"description": "not ready: the body's `reason` says why"}},
)
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


@router.get("/metrics", responses=errors(403))
def metrics(agent: AgentDep, _: AdminDep) -> Response:
    """The service's Prometheus metrics (admin)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(agent.metrics.registry), media_type=CONTENT_TYPE_LATEST)
