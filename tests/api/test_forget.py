"""Forget-me (issue 13): after ``DELETE /v1/users/{id}`` the user is gone from events,
impressions, the exported training data and client keys' bindings; no user-level vector exists
in Chroma; the answer names the trained weights fitted on them. A real server on a copy of the
demo catalog, real SQLite and Chroma, a real ``build-data`` export, real HTTP."""

from __future__ import annotations

import json
import shutil
import sqlite3

import httpx
import pytest

LEAVER, STAYER = "demo-user-01", "demo-user-02"


def engage(url: str, user: str, key: str) -> None:
    """Get recommendations, then click, like and dislike three of the picks (an impression and
    its feedback: what build-data turns into training rows)."""
    headers = {"Authorization": f"Bearer {key}"}
    shown = httpx.post(
        f"{url}/v1/recommendations", json={"user_id": user, "k": 5}, headers=headers, timeout=120
    ).json()
    picks = [it["id"] for it in shown["items"]]
    events = [
        {
            "user_id": user,
            "item_id": item,
            "kind": kind,
            "impression_id": shown["impression_id"],
            "idempotency_key": f"{user}-{kind}",
        }
        for item, kind in zip(picks, ("click", "like", "dislike"))
    ]
    r = httpx.post(f"{url}/v1/feedback", json={"events": events}, headers=headers, timeout=60)
    assert r.json() == {"accepted": 3, "duplicates": 0}


def rows_of(folder, user: str) -> dict[str, int]:
    counts = {}
    for file in sorted(folder.glob("*.jsonl")):
        n = sum(json.loads(line)["user_id"] == user for line in file.read_text().splitlines())
        if n:
            counts[file.name] = n
    return counts


@pytest.mark.slow
def test_a_forgotten_user_is_gone_from_store_exports_and_keys(demo_data, tmp_path):
    import finetune.feedback_data as fd
    from agent.api.app import create_app
    from agent.api.auth import create_key
    from agent.api.background_server import BackgroundServer
    from agent.config import Settings
    from agent.store import SQLiteStore

    folder = tmp_path / "data"
    shutil.copytree(demo_data, folder)
    registry = tmp_path / "adapters"
    store = SQLiteStore(folder / "muse.db")
    admin = create_key(store, "admin")[0]
    leaver_app = create_key(store, "client", [LEAVER])[0]
    settings = Settings(data_dir=folder, auth="keys", adapters_dir=registry)
    with BackgroundServer(create_app(settings, engine=None)) as server:
        for user in (LEAVER, STAYER):
            engage(server.url, user, admin)
        export = tmp_path / "feedback-round-1"
        fd.build_data(store, export, fd.BuildConfig(cutoff=float("inf")), held_out=set())
        before = {user: rows_of(export, user) for user in (LEAVER, STAYER)}
        assert sum(before[LEAVER].values()) >= 3 and sum(before[STAYER].values()) >= 3, before
        # an adapter trained on that export (its manifest names the data, as `muse finetune train` writes it)
        adapter = registry / "kto-feedback-1"
        adapter.mkdir(parents=True)
        (adapter / "adapter_config.json").write_text("{}")
        (adapter / "manifest.json").write_text(json.dumps({"kind": "ranker", "data": str(export)}))

        r = httpx.delete(f"{server.url}/v1/users/{LEAVER}", headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == 200, r.text
        gone = r.json()
        history = httpx.get(f"{server.url}/v1/users/{LEAVER}/history", headers={"Authorization": f"Bearer {admin}"})
        assert history.status_code == 404
        again = httpx.delete(f"{server.url}/v1/users/{LEAVER}", headers={"Authorization": f"Bearer {admin}"})
        assert again.status_code == 404
        # the leaver's app key is bound to nobody now
        r = httpx.post(
            f"{server.url}/v1/recommendations",
            json={"user_id": LEAVER},
            headers={"Authorization": f"Bearer {leaver_app}"},
        )
        assert r.status_code == 403
    store.close()

    assert gone["deleted"]["events"] > 3 and gone["deleted"]["impressions"] == 1
    assert gone["deleted"]["users"] == 1 and gone["deleted"]["api_key_bindings"] == 1
    assert gone["exported_rows"] == {str(export.resolve() / name): n for name, n in before[LEAVER].items()}
    assert rows_of(export, LEAVER) == {} and rows_of(export, STAYER) == before[STAYER]
    report = json.loads((export / "report.json").read_text())
    for file in export.glob("*.jsonl"):
        assert report["files"][file.name] == len(file.read_text().splitlines())
    weights = " | ".join(gone["in_model_weights"])
    assert "retrieval model" in weights and "'kto-feedback-1'" in weights

    conn = sqlite3.connect(folder / "muse.db")
    for table, column in (
        ("events", "user_id"),
        ("impressions", "user_id"),
        ("users", "id"),
        ("api_key_users", "user_id"),
    ):
        assert conn.execute(f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", (LEAVER,)).fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM events WHERE user_id = ?", (STAYER,)).fetchone()[0] > 0
    items = {row[0] for row in conn.execute("SELECT id FROM items")}
    conn.close()
    # Chroma holds item vectors only: user vectors are computed per request and never stored.
    from retrieval.index import chroma_client

    client = chroma_client(settings.chroma_path, None)
    for collection in client.list_collections():
        ids = client.get_collection(collection.name).get(include=[])["ids"]
        assert ids and set(ids) <= items, collection.name
