"""Users: history, listing, onboarding items and forget-me (``agent.pipeline.users``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from agent.api.protocol import (
    EventOut,
    ForgetResponse,
    HistoryResponse,
    ItemBrief,
    OnboardingResponse,
    UserOut,
    UsersResponse,
)
from agent.api.routes.deps import AdminDep, AgentDep, CallerDep, errors
from agent.pipeline.onboarding import ONBOARDING_ITEMS

router = APIRouter(tags=["users"])


@router.get("/v1/users/{user_id}/history", response_model=HistoryResponse, responses=errors(403, 404, 422))
def history(user_id: str, agent: AgentDep, caller: CallerDep) -> HistoryResponse:
    """The user's events, oldest first, each with its item's title."""
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


@router.get("/v1/users", response_model=UsersResponse, responses=errors(422))
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


@router.get("/v1/onboarding", response_model=OnboardingResponse, responses=errors(422))
def onboarding(
    agent: AgentDep, _: CallerDep, k: Annotated[int, Query(ge=1, le=50)] = ONBOARDING_ITEMS
) -> OnboardingResponse:
    """Items to ask a new user about, spread over categories and popularity (chosen by code)."""
    return OnboardingResponse(items=[ItemBrief.of(it) for it in agent.users.onboarding(k)])


@router.delete("/v1/users/{user_id}", response_model=ForgetResponse, responses=errors(403, 404, 422))
def forget(user_id: str, agent: AgentDep, _: AdminDep) -> ForgetResponse:
    """Forget a user: their events, impressions and rows of exported training data are deleted;
    the answer names the trained weights that were fitted on them (until retrained)."""
    gone = agent.users.forget(user_id)
    return ForgetResponse(
        user_id=user_id, deleted=gone.deleted, exported_rows=gone.exported_rows, in_model_weights=gone.in_model_weights
    )
