"""What real clients and real data send (issue 13): each input below once got a wrong answer
(a 422 for valid OpenAI input, a 200 that stored garbage, a lost event, a vector-store error, a
disliked item shown again). A real uvicorn server on a copy of the demo catalog, real SQLite and
Chroma stores, real HTTP; no LLM (the texts are templates), since none of this is about text."""

from __future__ import annotations

import shutil
import time

import httpx
import pytest

USER = "demo-user-01"


@pytest.fixture(scope="module")
def url(demo_data, tmp_path_factory):
    from agent.api.app import create_app
    from agent.api.background_server import BackgroundServer
    from agent.config import Settings

    folder = tmp_path_factory.mktemp("inputs") / "data"
    shutil.copytree(demo_data, folder)
    with BackgroundServer(create_app(Settings(data_dir=folder), engine=None)) as server:
        yield server.url


def post_raw(url: str, path: str, text: str) -> httpx.Response:
    """POST a body exactly as written (NaN and Infinity are not JSON, but Python's json writes them)."""
    return httpx.post(f"{url}{path}", content=text, headers={"content-type": "application/json"}, timeout=60)


def history(url: str, user: str) -> list[dict]:
    return httpx.get(f"{url}/v1/users/{user}/history").json()["events"]


def recommend(url: str, user: str, **body) -> dict:
    r = httpx.post(f"{url}/v1/recommendations", json={"user_id": user, **body}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


# ------------------------------------------------------------ 1. OpenAI array content


def test_array_content_parts_are_joined_and_answered(url):
    from openai import OpenAI

    client = OpenAI(base_url=f"{url}/v1", api_key="unused")
    parts = [{"type": "text", "text": "something light"}, {"type": "text", "text": "from the 90s"}]
    reply = client.chat.completions.create(model="muse", user=USER, messages=[{"role": "user", "content": parts}])
    muse = reply.model_extra["muse"]
    assert muse["items"] and muse["intent"]["year_min"] == 1990 and muse["intent"]["year_max"] == 1999
    assert muse["intent"]["query"] == "something light from the 90s"  # both parts read, as one text


@pytest.mark.parametrize(
    ("extra", "status", "names"),
    [
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            422,
            "'image_url' part; Muse reads text parts only",
        ),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, 422, "`tools` is not supported"),
        ({"response_format": {"type": "json_object"}}, 422, "`response_format` is not supported"),
        ({"logprobs": True}, 422, "`logprobs` is not supported"),
        ({"temprature": 0.2}, 422, "unknown field(s) ['temprature']"),
    ],
)
def test_a_field_muse_cannot_honour_is_refused_by_name(url, extra, status, names):
    body = {"model": "muse", "user": USER, "messages": [{"role": "user", "content": "a drama"}], **extra}
    r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == status and names in r.json()["error"]["message"], r.text


def test_sampling_settings_are_named_back_not_dropped_in_silence(url):
    body = {
        "model": "muse",
        "user": USER,
        "messages": [{"role": "user", "content": "a drama"}],
        "temperature": 0.7,
        "top_p": 0.9,
        "tools": [],
        "tool_choice": "auto",
    }  # SDK defaults
    r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["x-muse-ignored-fields"] == "temperature, top_p"
    assert r.json()["muse"]["ignored_fields"] == ["temperature", "top_p"]


# ------------------------------------------------------------ 2. non-finite numbers


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ('"kind": "dwell", "value": NaN', "value"),
        ('"kind": "click", "timestamp": Infinity', "timestamp"),
        ('"kind": "rating", "value": -Infinity', "value"),
    ],
)
def test_non_finite_numbers_are_refused_and_nothing_is_stored(url, event, field):
    before = len(history(url, USER))
    body = f'{{"events": [{{"user_id": "{USER}", "item_id": "demo-050", "idempotency_key": "nf-{field}", {event}}}]}}'
    r = post_raw(url, "/v1/feedback", body)
    assert r.status_code == 422 and field in r.json()["error"]["message"] and "finite" in r.text, r.text
    assert len(history(url, USER)) == before


def test_non_finite_numbers_elsewhere_are_refused(url):
    r = post_raw(url, "/v1/recommendations", f'{{"user_id": "{USER}", "diversity": NaN}}')
    assert r.status_code == 422 and "diversity" in r.text
    r = post_raw(url, "/v1/items", '{"items": [{"id": "nf-1", "title": "T", "metadata": {"budget": NaN}}]}')
    assert r.status_code == 422 and "metadata.budget" in r.text
    r = post_raw(
        url,
        "/v1/chat/completions",
        '{"model": "muse", "user": "u", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
    )
    assert r.status_code == 422 and "temperature" in r.text


# ------------------------------------------------------------ 3. timestamps


def test_a_timestamp_in_milliseconds_is_refused(url):
    event = {
        "user_id": USER,
        "item_id": "demo-051",
        "kind": "click",
        "idempotency_key": "ms-1",
        "timestamp": time.time() * 1000,
    }
    r = httpx.post(f"{url}/v1/feedback", json={"events": [event]})
    assert r.status_code == 422 and "more than a day in the future" in r.text and "milliseconds" in r.text
    assert not [e for e in history(url, USER) if e["item_id"] == "demo-051"]


def test_iso_8601_timestamps_are_parsed_exactly(url):
    events = [
        {
            "user_id": "iso-user",
            "item_id": "demo-052",
            "kind": "click",
            "idempotency_key": "iso-1",
            "timestamp": "2025-01-24T03:31:23Z",
        },
        {
            "user_id": "iso-user",
            "item_id": "demo-053",
            "kind": "click",
            "idempotency_key": "iso-2",
            "timestamp": "2025-01-24T05:31:23.5+02:00",
        },
    ]
    assert httpx.post(f"{url}/v1/feedback", json={"events": events}).status_code == 200
    assert [e["timestamp"] for e in history(url, "iso-user")] == [1737689483.0, 1737689483.5]
    naive = {**events[0], "idempotency_key": "iso-3", "timestamp": "2025-01-24T03:31:23"}
    r = httpx.post(f"{url}/v1/feedback", json={"events": [naive]})
    assert r.status_code == 422 and "no UTC offset" in r.text


# ------------------------------------------------------------ 4. idempotency keys per user


def test_the_same_idempotency_key_from_two_users_is_two_events(url):
    a = {"user_id": "key-user-a", "item_id": "demo-060", "kind": "like", "idempotency_key": "K"}
    b = {"user_id": "key-user-b", "item_id": "demo-061", "kind": "like", "idempotency_key": "K"}
    assert httpx.post(f"{url}/v1/feedback", json={"events": [a]}).json() == {"accepted": 1, "duplicates": 0}
    assert httpx.post(f"{url}/v1/feedback", json={"events": [b]}).json() == {"accepted": 1, "duplicates": 0}
    assert httpx.post(f"{url}/v1/feedback", json={"events": [b]}).json() == {"accepted": 0, "duplicates": 1}
    assert [e["item_id"] for e in history(url, "key-user-b")] == ["demo-061"]


# ------------------------------------------------------------ 5. a filter that matches nothing


@pytest.mark.parametrize(("user", "extra"), [(USER, {}), ("nobody-yet", {"query": "a western"}), ("nobody-yet", {})])
def test_a_filter_that_matches_nothing_is_an_empty_answer_with_a_reason(url, user, extra):
    got = recommend(url, user, k=5, filters={"categories": ["No Such Category"]}, **extra)
    assert got["items"] == [] and got["reason"] == "no item in the catalog has the category 'No Such Category'"


def test_a_chat_whose_filters_match_nothing_says_why(url):
    body = {"model": "muse", "user": USER, "messages": [{"role": "user", "content": "a western from 1850"}]}
    r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    assert (
        r.json()["muse"]["items"] == []
        and "I found nothing that fits: " in r.json()["choices"][0]["message"]["content"]
    )


# ------------------------------------------------------------ 6. a new item in a new category


def test_a_new_item_in_a_new_category_is_served_at_once_on_every_path(url):
    item = {
        "id": "new-cat-1",
        "title": "Bayou Arias",
        "categories": ["Zydeco Opera"],
        "year": 2026,
        "text": "An opera sung to a zydeco accordion in a Louisiana dance hall.",
    }
    assert httpx.post(f"{url}/v1/items", json={"items": [item]}, timeout=120).status_code == 200
    only = {"categories": ["Zydeco Opera"]}
    for user, extra in ((USER, {}), ("cold-a", {"query": "accordion opera"}), ("cold-b", {})):
        got = recommend(url, user, k=3, filters=only, **extra)
        assert [it["id"] for it in got["items"]] == ["new-cat-1"], (user, got)


# ------------------------------------------------------------ 7. dislikes


def test_a_disliked_or_low_rated_item_never_comes_back(url):
    user = "dislike-user"
    likes = [
        {"user_id": user, "item_id": i, "kind": "like", "idempotency_key": f"l-{i}"}
        for i in ("demo-001", "demo-003", "demo-099")
    ]
    assert httpx.post(f"{url}/v1/feedback", json={"events": likes}).status_code == 200
    first = recommend(url, user, k=5)
    top = first["items"][0]["id"]
    dislike = {
        "user_id": user,
        "item_id": top,
        "kind": "dislike",
        "idempotency_key": "d-1",
        "impression_id": first["impression_id"],
    }
    assert httpx.post(f"{url}/v1/feedback", json={"events": [dislike]}).status_code == 200
    second = recommend(url, user, k=5)
    assert top not in [it["id"] for it in second["items"]] and top not in second["candidate_ids"]
    low = second["items"][0]["id"]
    rating = {"user_id": user, "item_id": low, "kind": "rating", "value": 1.0, "idempotency_key": "r-1"}
    assert httpx.post(f"{url}/v1/feedback", json={"events": [rating]}).status_code == 200
    third = recommend(url, user, k=5)
    assert not {top, low} & set(third["candidate_ids"])
    chat = {"model": "muse", "user": user, "messages": [{"role": "user", "content": "more please"}]}
    shown = httpx.post(f"{url}/v1/chat/completions", json=chat, timeout=60).json()["muse"]
    assert not {top, low} & set(shown["candidate_ids"])


def test_a_bug_is_a_logged_500_and_a_client_mistake_a_400(demo_data, tmp_path, caplog):
    """Typed errors at the edge: ``InvalidRequestError`` (the client's mistake) is a 400 naming
    it; any other exception, a ValueError included, is a bug: a 500 in OpenAI's shape, logged."""
    from agent.api.app import create_app
    from agent.api.background_server import BackgroundServer
    from agent.config import Settings

    folder = tmp_path / "data"
    shutil.copytree(demo_data, folder)
    app = create_app(Settings(data_dir=folder), engine=None)
    with BackgroundServer(app) as server:
        r = httpx.post(
            f"{server.url}/v1/chat/completions",
            timeout=60,
            json={"model": "muse", "user": USER, "messages": [{"role": "system", "content": "hi"}]},
        )
        assert r.status_code == 400 and r.json()["error"]["message"] == "the conversation has no user message"

        def broken(ask):
            raise ValueError("an internal check failed")

        app.state.agent.plan = broken
        r = httpx.post(f"{server.url}/v1/recommendations", json={"user_id": USER}, timeout=60)
    assert r.status_code == 500
    assert r.json()["error"] == {
        "message": "internal error (ValueError); it is logged on the server",
        "type": "server_error",
        "code": 500,
    }
    logged = [rec for rec in caplog.records if rec.name == "agent.api.app" and rec.exc_info]
    assert logged and "POST /v1/recommendations failed" in logged[0].getMessage()
