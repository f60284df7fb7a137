"""HTTP routes, a module per resource, each a thin layer that parses, calls the agent and shapes
the answer (the style of vLLM's OpenAI server: routes over a serving layer).

Domain errors raised by the agent become HTTP errors in ``agent.api.app`` only; each route
declares the ones it can answer (``deps.errors``), so the OpenAPI document lists them under the
route's tag. Every route but ``/healthz`` and ``/readyz`` names its caller (``CallerDep``: an API
key when ``MUSE_AUTH=keys``); routes that act for a user check the caller may act for that user,
and the catalog, adapter, deletion and metrics routes need the admin scope (``AdminDep``).

- ``recommendations``: ``POST /v1/recommendations``
- ``chat``: ``POST /v1/chat/completions``, ``GET /v1/models`` (OpenAI-compatible)
- ``feedback``: ``POST /v1/feedback``
- ``users``: history, listing, onboarding items, forget-me
- ``catalog``: ``POST /v1/items``, ``GET /v1/catalog``
- ``adapters``: ``POST /v1/adapters/serve``
- ``operations``: ``/healthz``, ``/readyz``, ``/metrics``
"""

from __future__ import annotations

from fastapi import APIRouter

from agent.api.routes import adapters, catalog, chat, feedback, operations, recommendations, users

router = APIRouter()
for _resource in (recommendations, chat, feedback, users, catalog, adapters, operations):
    router.include_router(_resource.router)
