"""``POST /v1/recommendations``: the REST answer for one user."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request

from agent.api.protocol import RecommendationRequest, RecommendationResponse
from agent.api.routes.deps import AgentDep, CallerDep, answer, errors
from agent.pipeline.answer import Ask
from retrieval.index import Filters

router = APIRouter(tags=["recommendations"])


@router.post("/v1/recommendations", response_model=RecommendationResponse, responses=errors(400, 403, 413, 422, 502))
async def recommend(
    body: RecommendationRequest, request: Request, agent: AgentDep, caller: CallerDep
) -> RecommendationResponse:
    """Up to ``k`` picks for ``user_id``, each with a pitch and an explanation (templates while
    the LLM is down: ``degraded`` says so), logged as one impression."""
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
        picked = await answer(request, agent, plan)
    return RecommendationResponse.of(picked)
