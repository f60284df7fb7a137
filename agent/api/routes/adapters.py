"""``POST /v1/adapters/serve``: the ranker's LoRA adapters (``agent.pipeline.rankers``)."""

from __future__ import annotations

from fastapi import APIRouter

from agent.api.protocol import ServeAdapterRequest, ServeAdapterResponse
from agent.api.routes.deps import AdminDep, AgentDep, errors

router = APIRouter(tags=["adapters"])


@router.post("/v1/adapters/serve", response_model=ServeAdapterResponse, responses=errors(400, 403, 413, 422, 502))
def serve_adapter(body: ServeAdapterRequest, agent: AgentDep, _: AdminDep) -> ServeAdapterResponse:
    """Switch (or split) ranker traffic to a registered adapter, loading it into the running LLM
    server if it is new. `muse finetune promote --url` calls this after a promotion."""
    return ServeAdapterResponse(**agent.rankers.serve(body.name, body.split))
