"""The HTTP edge against what public bug reports of similar servers found (issue 26): DNS
rebinding through the Host header, 405 without Allow, bodies nested deep enough to exhaust a
recursive check, a client key's user listing cut before it was filtered. A real uvicorn server on
a copy of the demo catalog, real SQLite, real HTTP; no LLM (none of this is about text)."""

from __future__ import annotations

import shutil

import httpx
import pytest

LATE_USER = "demo-user-40"  # sorts last of the demo's 40 users


@pytest.fixture(scope="module")
def open_server(demo_data, tmp_path_factory):
    from agent.api.app import create_app
    from agent.api.background_server import BackgroundServer
    from agent.config import Settings

    folder = tmp_path_factory.mktemp("edge") / "data"
    shutil.copytree(demo_data, folder)
    settings = Settings(data_dir=folder, allowed_hosts="muse.internal, *.muse.example")
    with BackgroundServer(create_app(settings, engine=None)) as running:
        yield running.url


@pytest.fixture(scope="module")
def keyed_server(demo_data, tmp_path_factory):
    from agent.api.app import create_app
    from agent.api.auth import create_key
    from agent.api.background_server import BackgroundServer
    from agent.config import Settings
    from agent.store import SQLiteStore

    folder = tmp_path_factory.mktemp("edge-keys") / "data"
    shutil.copytree(demo_data, folder)
    store = SQLiteStore(folder / "muse.db")
    keys = {"admin": create_key(store, "admin")[0], "late": create_key(store, "client", [LATE_USER])[0]}
    store.close()
    with BackgroundServer(create_app(Settings(data_dir=folder, auth="keys"), engine=None)) as running:
        yield running.url, keys


def with_host(url: str, host: str, path: str = "/v1/users/demo-user-01/history", **headers) -> httpx.Response:
    return httpx.get(f"{url}{path}", headers={"Host": host, **headers}, timeout=60)


def test_an_open_service_answers_only_its_own_host_names(open_server):
    port = open_server.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", "muse.internal:8000", "a.b.muse.example"):
        assert with_host(open_server, host).status_code == 200, host
    # a page on another origin, its name resolved to 127.0.0.1 (DNS rebinding): refused, reads and writes
    for host in (f"attacker.example:{port}", "muse.example", "127.0.0.1.attacker.example", ""):
        r = with_host(open_server, host)
        assert r.status_code == 421, host
        assert "MUSE_ALLOWED_HOSTS" in r.json()["error"]["message"]
    r = httpx.post(
        f"{open_server}/v1/feedback",
        json={"events": [{"user_id": "demo-user-01", "item_id": "demo-001", "kind": "like"}]},
        headers={"Host": f"attacker.example:{port}"},
    )
    assert r.status_code == 421


def test_with_keys_and_no_list_any_host_is_answered(keyed_server):
    url, keys = keyed_server
    r = with_host(url, "muse.behind-a-proxy.example", "/v1/models", Authorization=f"Bearer {keys['admin']}")
    assert r.status_code == 200


def test_host_rule_parses_ports_and_ipv6():
    from agent.api.app import TrustedHosts
    from agent.config import Settings

    rule = TrustedHosts(None, Settings(host="127.0.0.1").trusted_hosts())
    assert rule.allows("[::1]:8000") and rule.allows("LOCALHOST:1") and rule.allows("127.0.0.1")
    assert not rule.allows("[::2]:8000") and not rule.allows(None) and not rule.allows("localhost.evil")
    assert Settings(auth="keys").trusted_hosts() is None
    assert Settings(auth="keys", allowed_hosts="a.example").trusted_hosts() == ["a.example"]
    assert Settings(allowed_hosts="*").trusted_hosts() is None


def test_405_says_which_methods_are_allowed(open_server):
    r = httpx.get(f"{open_server}/v1/feedback")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json()["error"]["code"] == 405


@pytest.mark.parametrize("depth", [33, 966, 20_000])
def test_a_deeply_nested_body_is_a_clear_4xx(open_server, depth):
    nested = '{"a": ' * depth + "1" + "}" * depth
    chat = (
        '{"model": "muse", "user": "demo-user-01", "messages": [{"role": "user", "content": "hi"}], '
        f'"metadata": {nested}}}'
    )
    items = f'{{"items": [{{"id": "deep-1", "title": "Deep", "metadata": {nested}}}]}}'
    before = httpx.get(f"{open_server}/v1/catalog").json()["items"]
    for path, body in (("/v1/chat/completions", chat), ("/v1/items", items)):
        r = httpx.post(f"{open_server}{path}", content=body, headers={"content-type": "application/json"}, timeout=60)
        assert r.status_code in (400, 422), (path, depth, r.text[:200])
        message = r.json()["error"]["message"]
        # past the JSON parser's own recursion bound (about 1,000 levels) FastAPI answers 400 itself
        expected = "There was an error parsing the body" if depth > 1000 else "nests deeper than 32 levels"
        assert expected in message, message
    assert httpx.get(f"{open_server}/v1/catalog").json()["items"] == before  # nothing stored


def test_32_levels_are_accepted(open_server):
    nested = '{"a": ' * 31 + "1" + "}" * 31  # the item's metadata dict is level 1
    body = f'{{"items": [{{"id": "deep-ok", "title": "Deep enough", "metadata": {nested}}}]}}'
    r = httpx.post(f"{open_server}/v1/items", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text


def test_a_client_key_lists_its_own_users_however_late_they_sort(keyed_server):
    url, keys = keyed_server
    late = {"Authorization": f"Bearer {keys['late']}"}
    r = httpx.get(f"{url}/v1/users", params={"limit": 5}, headers=late)
    assert [u["user_id"] for u in r.json()["users"]] == [LATE_USER] and r.json()["next_after"] is None
    # an admin pages through all 40 users: full pages say where the next starts, the last says null
    admin, seen, after = {"Authorization": f"Bearer {keys['admin']}"}, [], None
    for _ in range(4):
        page = httpx.get(f"{url}/v1/users", params={"limit": 15, **({"after": after} if after else {})}, headers=admin)
        page = page.json()
        seen += [u["user_id"] for u in page["users"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 40 and seen[-1] == LATE_USER


def test_a_reused_idempotency_key_with_another_payload_is_409(open_server):
    event = {"user_id": "demo-user-02", "item_id": "demo-001", "kind": "like", "idempotency_key": "edge-k1"}
    first = httpx.post(f"{open_server}/v1/feedback", json={"events": [event]}).json()
    assert first == {"accepted": 1, "duplicates": 0}
    again = httpx.post(f"{open_server}/v1/feedback", json={"events": [event]}).json()
    assert again == {"accepted": 0, "duplicates": 1}  # a retry
    changed = httpx.post(f"{open_server}/v1/feedback", json={"events": [dict(event, kind="dislike")]})
    assert changed.status_code == 409 and "another kind" in changed.json()["error"]["message"]
    kinds = [e["kind"] for e in httpx.get(f"{open_server}/v1/users/demo-user-02/history").json()["events"]]
    assert "dislike" not in kinds
