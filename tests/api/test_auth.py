"""API keys (issue 13): stored hashed; 401 without a valid key; an admin scope and a client
scope bound to its users (403 otherwise); per-key rate limits (429 with Retry-After); revocation
at once; an open service only on the loopback address. A real uvicorn server with
MUSE_AUTH=keys on a copy of the demo catalog, real SQLite, real HTTP, the real OpenAI client."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3

import httpx
import pytest

ALICE, BOB = "demo-user-01", "demo-user-02"


@pytest.fixture(scope="module")
def server(demo_data, tmp_path_factory):
    from agent.api.app import create_app
    from agent.api.auth import create_key
    from agent.api.background_server import BackgroundServer
    from agent.config import Settings
    from agent.store import SQLiteStore

    folder = tmp_path_factory.mktemp("auth") / "data"
    shutil.copytree(demo_data, folder)
    store = SQLiteStore(folder / "muse.db")
    keys = {
        "admin": create_key(store, "admin", name="ops")[0],
        "alice": create_key(store, "client", [ALICE], name="alice's app")[0],
        "slow": create_key(store, "client", [BOB], rate="2/minute")[0],
    }
    store.close()
    with BackgroundServer(create_app(Settings(data_dir=folder, auth="keys"), engine=None)) as running:
        yield running.url, keys, folder


def call(url: str, method: str, path: str, key: str | None = None, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, f"{url}{path}", headers=headers, timeout=120, **kwargs)


def message(response: httpx.Response) -> str:
    return response.json()["error"]["message"]


def test_a_request_without_a_valid_key_gets_401_saying_why(server):
    url, keys, _ = server
    r = call(url, "POST", "/v1/recommendations", json={"user_id": ALICE})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer <key>" in message(r)
    r = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Basic {keys['admin']}"})
    assert r.status_code == 401 and "must read 'Bearer <key>'" in message(r)
    forged = keys["admin"][:-4] + "AAAA"  # the right id, the wrong secret
    for key in ("muse_000000000000_nope", forged, "sk-something-else"):
        r = call(url, "GET", "/v1/models", key)
        assert r.status_code == 401 and message(r) == "unknown API key"
    assert httpx.get(f"{url}/healthz").status_code == 200  # probes need no key
    assert httpx.get(f"{url}/readyz").status_code in (200, 503)


def test_keys_are_stored_as_sha256_hashes_only(server):
    _, keys, folder = server
    conn = sqlite3.connect(folder / "muse.db")
    rows = conn.execute("SELECT * FROM api_keys").fetchall()
    conn.close()
    stored = "\n".join(str(value) for row in rows for value in row)
    for key in keys.values():
        assert key not in stored and key.split("_", 2)[2] not in stored  # neither the key nor its secret
        assert hashlib.sha256(key.encode()).hexdigest() in stored


def test_a_client_key_acts_for_its_users_only(server):
    url, keys, _ = server
    alice = keys["alice"]
    assert call(url, "POST", "/v1/recommendations", alice, json={"user_id": ALICE, "k": 2}).status_code == 200
    assert call(url, "GET", f"/v1/users/{ALICE}/history", alice).status_code == 200
    r = call(url, "POST", "/v1/recommendations", alice, json={"user_id": BOB, "k": 2})
    assert r.status_code == 403 and f"not for user '{BOB}'" in message(r)
    assert call(url, "GET", f"/v1/users/{BOB}/history", alice).status_code == 403
    # the page's user list: a client key sees its own users only
    assert [u["user_id"] for u in call(url, "GET", "/v1/users", alice).json()["users"]] == [ALICE]

    before = call(url, "GET", f"/v1/users/{ALICE}/history", keys["admin"]).json()["events"]
    mixed = {
        "events": [
            {"user_id": ALICE, "item_id": "demo-001", "kind": "click", "idempotency_key": "m1"},
            {"user_id": BOB, "item_id": "demo-001", "kind": "click", "idempotency_key": "m2"},
        ]
    }
    r = call(url, "POST", "/v1/feedback", alice, json=mixed)
    assert r.status_code == 403 and BOB in message(r)
    assert call(url, "GET", f"/v1/users/{ALICE}/history", keys["admin"]).json()["events"] == before  # none stored

    admin_only = [
        ("POST", "/v1/items", {"json": {"items": [{"id": "x1", "title": "X"}]}}),
        ("DELETE", f"/v1/users/{ALICE}", {}),
        ("POST", "/v1/adapters/serve", {"json": {"name": "rank-v2"}}),
        ("GET", "/metrics", {}),
    ]
    for method, path, kwargs in admin_only:
        r = call(url, method, path, alice, **kwargs)
        assert r.status_code == 403, (path, r.text)
        assert message(r) == f"{method} {path} needs an admin key; key {alice.split('_')[1]} has the client scope"
    assert call(url, "GET", f"/v1/users/{ALICE}/history", keys["admin"]).status_code == 200  # not deleted


def test_an_admin_key_may_do_everything(server):
    url, keys, _ = server
    admin = keys["admin"]
    item = {"id": "auth-new-1", "title": "A Key to the Lighthouse", "categories": ["Drama"]}
    assert call(url, "POST", "/v1/items", admin, json={"items": [item]}).json()["upserted"] == 1
    assert call(url, "POST", "/v1/recommendations", admin, json={"user_id": BOB, "k": 2}).status_code == 200
    assert call(url, "GET", "/metrics", admin).status_code == 200
    assert {ALICE, BOB} <= {u["user_id"] for u in call(url, "GET", "/v1/users", admin).json()["users"]}


def test_the_openai_client_sends_its_api_key(server):
    import openai

    url, keys, _ = server
    reply = openai.OpenAI(base_url=f"{url}/v1", api_key=keys["alice"]).chat.completions.create(
        model="muse", user=ALICE, messages=[{"role": "user", "content": "a comedy"}]
    )
    assert reply.model_extra["muse"]["items"]
    with pytest.raises(openai.AuthenticationError, match="unknown API key"):
        openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()
    with pytest.raises(openai.PermissionDeniedError, match=BOB):
        openai.OpenAI(base_url=f"{url}/v1", api_key=keys["alice"]).chat.completions.create(
            model="muse", user=BOB, messages=[{"role": "user", "content": "a comedy"}]
        )


def test_a_key_over_its_rate_gets_429_with_retry_after(server):
    url, keys, _ = server
    codes = [call(url, "GET", f"/v1/users/{BOB}/history", keys["slow"]).status_code for _ in range(2)]
    assert codes == [200, 200]
    r = call(url, "GET", f"/v1/users/{BOB}/history", keys["slow"])
    assert r.status_code == 429 and "rate limit of 2/minute" in message(r)
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert call(url, "GET", f"/v1/users/{ALICE}/history", keys["alice"]).status_code == 200  # counted per key


def test_keys_created_and_revoked_on_a_running_server_count_at_once(server):
    from agent.api.auth import create_key
    from agent.store import SQLiteStore

    url, _, folder = server
    store = SQLiteStore(folder / "muse.db")
    try:
        key, row = create_key(store, "client", [ALICE])
        assert call(url, "GET", f"/v1/users/{ALICE}/history", key).status_code == 200
        assert store.revoke_api_key(row["id"]) and not store.revoke_api_key(row["id"])
        r = call(url, "GET", f"/v1/users/{ALICE}/history", key)
        assert r.status_code == 401 and message(r) == f"API key {row['id']} was revoked"
    finally:
        store.close()


def test_key_rules(store):
    from agent.api.auth import create_key

    with pytest.raises(ValueError, match="at least one --user"):
        create_key(store, "client", [])
    with pytest.raises(ValueError, match="admin key acts for every user"):
        create_key(store, "admin", ["u1"])
    with pytest.raises(ValueError, match="scope 'root'"):
        create_key(store, "root")
    with pytest.raises(ValueError, match="rate '5 per fortnight'.*COUNT/UNIT"):
        create_key(store, "admin", rate="5 per fortnight")
    assert store.api_keys() == []  # nothing half-made


def test_an_open_service_serves_the_loopback_address_only(tmp_path, monkeypatch, capsys):
    from agent.cli import access_notice, main
    from agent.config import Settings

    for host in ("127.0.0.1", "localhost", "::1"):
        Settings(host=host).check_exposure()
    Settings(host="0.0.0.0", auth="keys").check_exposure()
    for host in ("0.0.0.0", "192.168.1.5", "muse.example"):
        with pytest.raises(ValueError, match=f"MUSE_HOST={host} with MUSE_AUTH=off"):
            Settings(host=host).check_exposure()
    assert "only this machine can reach it" in access_notice(Settings(), [])
    assert "none exists yet" in access_notice(Settings(auth="keys"), [])

    monkeypatch.setenv("MUSE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MUSE_HOST", "0.0.0.0")
    assert main(["serve"]) == 2  # refused before anything is built or bound
    assert "MUSE_AUTH=off would let anyone" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()


def test_muse_keys_commands(tmp_path, monkeypatch, capsys):
    from agent.cli import main

    monkeypatch.setenv("MUSE_DATA_DIR", str(tmp_path))
    assert main(["keys", "create", "--scope", "client", "--user", "u1", "--rate", "10/second"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("muse_")
    assert main(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert '"users": ["u1"]' in listed and '"rate": "10/second"' in listed and key.split("_", 2)[2] not in listed
    assert main(["keys", "revoke", key.split("_")[1]]) == 0
    assert main(["keys", "revoke", key.split("_")[1]]) == 2
    assert "no live API key" in capsys.readouterr().err
