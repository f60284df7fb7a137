"""``POST /v1/feedback``: what users did next, logged as events (all or nothing)."""

from __future__ import annotations

import time

from fastapi import APIRouter

from agent.api.protocol import FeedbackRequest, FeedbackResponse
from agent.api.routes.deps import AgentDep, CallerDep, errors
from agent.catalog import Interaction

router = APIRouter(tags=["feedback"])


@router.post("/v1/feedback", response_model=FeedbackResponse, responses=errors(400, 403, 409, 413, 422))
def feedback(body: FeedbackRequest, agent: AgentDep, caller: CallerDep) -> FeedbackResponse:
    """Log a batch of events; one bad event (a foreign user, an unknown item or impression, a
    reused idempotency key) rejects the whole batch, and a repeated key counts as a duplicate."""
    caller.check_users(e.user_id for e in body.events)
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
