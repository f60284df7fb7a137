"""Admission control through the real HTTP service (issue 25): with MUSE_LLM_MAX_IN_FLIGHT=1 and
one answer's texts in the engine, the next answer gets its templates at once, says why, and
leaves the LLM up (busy is not a failure); once the first is gone, answers reach the LLM again."""

from __future__ import annotations

import httpx
import pytest

from tests.api.test_api import wait_ready
from tests.conftest import serve_demo

USER = "demo-user-01"


@pytest.fixture(scope="module")
def service(demo_data, tiny_model, tiny_registry, tmp_path_factory):
    with serve_demo(
        demo_data, tiny_model, tiny_registry, tmp_path_factory.mktemp("admission"), llm_max_in_flight=1
    ) as server:
        yield server


def test_past_the_bound_an_answer_gets_templates_at_once_and_says_why(service):
    wait_ready(service.url)
    entered, calls = service.engine.entered, len(service.engine.ended)
    body = {"model": "muse", "user": USER, "stream": True, "messages": [{"role": "user", "content": "surprise me"}]}
    service.engine.mode = "texts_hung"
    try:
        with httpx.stream("POST", f"{service.url}/v1/chat/completions", json=body, timeout=120) as first:
            lines = first.iter_lines()  # held: the first client stays while the second asks
            next(line for line in lines if "Here are" in line)
            assert service.engine.wait_entered(entered)  # the first answer's texts hold the one place

            second = httpx.post(
                f"{service.url}/v1/chat/completions",
                json={**body, "stream": False, "user": "demo-user-02"},
                timeout=120,
            ).json()
            muse = second["muse"]
            assert muse["degraded"] is True and muse["items"]
            assert (
                muse["degraded_reason"] == "the language model was busy with 1 other answer (MUSE_LLM_MAX_IN_FLIGHT)"
            )
            assert all(set(it["text_sources"].values()) == {"template"} for it in muse["items"])
            reply = second["choices"][0]["message"]["content"]
            assert reply.endswith(f"(Some texts are templates: {muse['degraded_reason']}.)\n")
            assert service.engine.entered == entered + 1  # the second never reached the engine
            ready = httpx.get(f"{service.url}/readyz").json()
            assert ready["llm"] == "up" and ready["llm_answers_in_flight"] == "1 of 1"  # busy is not down
            assert "muse_llm_shed_total 1.0" in httpx.get(f"{service.url}/metrics").text
        service.engine.wait_ended(calls)  # the first client has left
    finally:
        service.engine.mode = "up"
    assert service.engine.ended[calls:] == ["cancelled"]  # its place is free again

    third = httpx.post(f"{service.url}/v1/recommendations", json={"user_id": USER, "k": 2}, timeout=120).json()
    assert service.engine.entered == entered + 2 and third["degraded"] is False and third["degraded_reason"] is None
    assert httpx.get(f"{service.url}/readyz").json()["llm_answers_in_flight"] == "0 of 1"
