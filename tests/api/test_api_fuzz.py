"""Schema-driven fuzzing of the HTTP API (schemathesis over Muse's own OpenAPI document): for
every operation, generated requests never get a 5xx, every 4xx carries a message that says
what is wrong, and every status answered is one the operation declares in the document. Both
kinds of input: valid by the schema (``positive``) and deliberately invalid
(``negative``). Bounded (``MAX_EXAMPLES`` per operation and kind) so CI can run it; a real
uvicorn server on a copy of the demo catalog, no LLM (texts are templates)."""

from __future__ import annotations

import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

MAX_EXAMPLES = 50


@pytest.fixture(scope="module")
def api_schema(demo_data, tmp_path_factory):
    from agent.api.app import create_app
    from agent.api.background_server import BackgroundServer
    from agent.config import Settings

    folder = tmp_path_factory.mktemp("fuzz") / "data"
    shutil.copytree(demo_data, folder)
    with BackgroundServer(create_app(Settings(data_dir=folder), engine=None)) as server:
        yield schemathesis.openapi.from_url(f"{server.url}/openapi.json")


def fuzz(operation, mode: GenerationMode, seen: dict[str, set[int]]):
    """A Hypothesis test of one operation: up to ``MAX_EXAMPLES`` generated requests, each
    answered below 500, each 4xx with a message; status codes collected in ``seen``."""
    label = f"{operation.method.upper()} {operation.path}"

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=True,
    )
    def check(case):
        response = case.call(timeout=120)
        where = f"{case.method} {case.formatted_path}"
        seen.setdefault(label, set()).add(response.status_code)
        if label == "GET /readyz" and response.status_code == 503:  # not ready: its documented answer
            assert response.json()["ready"] is False and response.json()["reason"]
            return
        assert response.status_code < 500, f"{where} -> {response.status_code}: {response.text[:300]}"
        if response.status_code >= 400:
            message = response.json()["error"]["message"]
            assert isinstance(message, str) and len(message) >= 10, (where, message)

    return check


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_server_error_and_every_client_error_says_what_is_wrong(api_schema, mode):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8  # every route of the API, not an empty document
    seen: dict[str, set[int]] = {}
    for operation in operations:
        try:
            fuzz(operation, mode, seen)()
        except Unsatisfiable:  # no invalid request exists for a route without a body or constrained parameters
            assert mode == GenerationMode.NEGATIVE and operation.method.upper() in ("GET", "DELETE"), operation
    print(mode.value, {k: sorted(v) for k, v in seen.items()})
    paths = api_schema.raw_schema["paths"]
    declared = {
        f"{m.upper()} {path}": {int(c) for c in op["responses"]}
        for path, ops in paths.items()
        for m, op in ops.items()
    }
    undeclared = {label: sorted(codes - declared[label]) for label, codes in seen.items()}
    assert not any(undeclared.values()), f"answered but not declared in the OpenAPI document: {undeclared}"
    assert {"POST /v1/recommendations", "POST /v1/feedback", "POST /v1/chat/completions", "POST /v1/items"} <= set(
        seen
    )
