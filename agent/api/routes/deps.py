"""What every route shares: the agent and the caller as FastAPI dependencies, the error responses
a route declares, and answering a plan while watching for the client to leave."""

from __future__ import annotations

import threading
from typing import Annotated

import anyio
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from agent.api.auth import Caller
from agent.api.protocol import ErrorResponse
from agent.pipeline.answer import Answer, Plan
from agent.pipeline.llm_gate import RequestCancelled
from agent.pipeline.recommender import MuseAgent

# What each error status means for a caller, as the OpenAPI document says it (the mapping of
# domain errors to these statuses is ``agent.api.app.DOMAIN_ERRORS``).
ERROR_MEANINGS: dict[int, str] = {
    400: "the request is invalid; the message says how (an unknown adapter, no user message, ...)",
    401: "no valid API key (MUSE_AUTH=keys)",
    403: "the key may not do this: another user's data, or a route that needs the admin scope",
    404: "unknown user",
    409: "an idempotency key reused for a different event",
    413: "the request body is larger than MUSE_MAX_BODY_BYTES",
    422: "a field is malformed, or an event names an unknown item or impression",
    429: "the key's rate limit is spent: retry after Retry-After seconds",
    502: "the LLM server failed or is not served",
    503: "Muse is starting",
}
# Any route that names its caller can answer these.
CALLER_ERRORS = (401, 429, 503)


def errors(*codes: int, caller: bool = True) -> dict[int | str, dict]:
    """The ``responses`` of a route: ``codes`` and, for a route that names its ``caller``,
    ``CALLER_ERRORS``, each with ``ErrorResponse``'s shape and its meaning. Raises ``KeyError``
    for a status ``ERROR_MEANINGS`` lacks."""
    declared = {*codes, *(CALLER_ERRORS if caller else ())}
    return {c: {"model": ErrorResponse, "description": ERROR_MEANINGS[c]} for c in sorted(declared)}


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


async def answer(request: Request, agent: MuseAgent, plan: Plan) -> Answer:
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
