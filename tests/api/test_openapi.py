"""The OpenAPI document groups the routes by resource and declares their error answers (what a
client generator or a reader of /docs sees). That the declared statuses are the ones the server
really answers is checked by the fuzzing test (tests/api/test_api_fuzz.py)."""

from __future__ import annotations

import pytest

RESOURCES = {"recommendations", "chat (OpenAI-compatible)", "feedback", "users", "catalog", "adapters", "operations"}


@pytest.fixture(scope="module")
def document() -> dict:
    from agent.api.app import create_app
    from agent.config import Settings

    return create_app(Settings(), engine=None).openapi()  # the document needs no store: no lifespan runs


def operations(document: dict) -> dict[str, dict]:
    return {f"{m.upper()} {path}": op for path, ops in document["paths"].items() for m, op in ops.items()}


def test_every_route_has_one_resource_tag_and_every_resource_has_a_route(document):
    ops = operations(document)
    assert len(ops) >= 14
    assert all(len(op["tags"]) == 1 and op["tags"][0] in RESOURCES for op in ops.values()), {
        k: op.get("tags") for k, op in ops.items()
    }
    assert {op["tags"][0] for op in ops.values()} == RESOURCES


def test_error_answers_are_declared_in_the_error_shape(document):
    ops = operations(document)
    error_ref = "#/components/schemas/ErrorResponse"

    def declared(label: str) -> dict[int, str]:
        return {
            int(code): answer["content"]["application/json"]["schema"]["$ref"]
            for code, answer in ops[label]["responses"].items()
            if int(code) >= 400 and "content" in answer
        }

    for label in ops:
        if label in ("GET /healthz", "GET /readyz"):  # no caller is named
            continue
        assert {401, 429, 503} <= set(declared(label)), label  # every route that names its caller
        assert set(declared(label).values()) == {error_ref}, label
    assert 404 in declared("DELETE /v1/users/{user_id}") and 404 in declared("GET /v1/users/{user_id}/history")
    assert 409 in declared("POST /v1/feedback") and 403 in declared("POST /v1/items")
    assert 502 in declared("POST /v1/chat/completions") and 400 in declared("POST /v1/adapters/serve")
    detail = document["components"]["schemas"]["ErrorDetail"]["properties"]
    assert set(detail) == {"message", "type", "code"}
