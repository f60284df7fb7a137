"""The catalog: adding or replacing items (admin) and what a page's filters offer."""

from __future__ import annotations

from fastapi import APIRouter

from agent.api.protocol import CatalogResponse, ItemsRequest
from agent.api.routes.deps import AdminDep, AgentDep, CallerDep, errors
from agent.catalog import Item

router = APIRouter(tags=["catalog"])


@router.post("/v1/items", responses=errors(400, 403, 413, 422))
def upsert_items(body: ItemsRequest, agent: AgentDep, _: AdminDep) -> dict:
    """Add or replace items; they are embedded and searchable when the call returns."""
    items = [Item(i.id, i.title, i.text, tuple(i.categories), i.year, i.metadata) for i in body.items]
    return agent.upsert_items(items)


@router.get("/v1/catalog", response_model=CatalogResponse, responses=errors())
def catalog(agent: AgentDep, _: CallerDep) -> CatalogResponse:
    """The catalog's size, categories and year range (what a page's filters offer)."""
    n, categories, year_min, year_max = agent.catalog_summary()
    return CatalogResponse(items=n, categories=categories, year_min=year_min, year_max=year_max)
