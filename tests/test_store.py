"""The event store: idempotent appends, all-or-nothing batches, history order, migrations.

One test body per backend: every test taking ``store`` runs on a SQLite file and on a
throw-away PostgreSQL server (skipped, with the reason, where PostgreSQL cannot start).
"""

import sqlite3

import pytest

from agent.catalog import Interaction, Item
from agent.store import SQLiteStore, SQLStore, UnknownItemError


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SQLiteStore(tmp_path / "muse.db")
    else:
        from tests.postgres_server import new_database

        s = SQLStore(new_database(request.getfixturevalue("postgres")))
    yield s
    s.close()


@pytest.fixture
def stocked(store):
    store.upsert_items([Item("a", "Alpha"), Item("b", "Beta", categories=("Drama",), year=1990)])
    return store


def test_sqlite_file_is_in_wal_mode(tmp_path):
    SQLiteStore(tmp_path / "muse.db").close()
    conn = sqlite3.connect(tmp_path / "muse.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_migrations_build_exactly_the_tables_the_code_uses(store):
    """Alembic's autogenerate comparison finds nothing between the migrated database and
    ``agent.store.schema``: a column added to one and not the other fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    from agent.store.schema import metadata

    engine = create_engine(store.url)
    with engine.connect() as c:
        assert MigrationContext.configure(c).get_current_revision() == "0001"
        assert compare_metadata(MigrationContext.configure(c), metadata) == []
    engine.dispose()


def test_database_urls_are_checked_and_passwords_hidden_in_names():
    from types import SimpleNamespace

    from agent.config import database_url

    url = database_url("postgresql://u:pw@h:5432/db")
    assert url == "postgresql+psycopg://u:pw@h:5432/db"
    assert "pw" not in SQLStore.__str__(SimpleNamespace(url=url))  # what messages print
    with pytest.raises(ValueError, match="expected sqlite:///PATH or postgresql://"):
        database_url("mysql://u@h/db")


def test_retried_write_is_not_counted_twice(stocked):
    batch = [
        Interaction("u1", "a", 10.0, "click", key="evt-1"),
        Interaction("u1", "b", 20.0, "like", 1.0, key="evt-2"),
    ]
    assert stocked.add_events(batch) == 2
    assert stocked.add_events(batch) == 0  # the retry
    assert stocked.counts()["events"] == 2
    # Without explicit keys, the content itself is the key.
    plain = [Interaction("u2", "a", 5.0, "rating", 4.0)]
    assert stocked.add_events(plain) == 1 and stocked.add_events(plain) == 0


def test_unknown_item_fails_the_whole_batch(stocked):
    batch = [Interaction("u1", "a", 1.0, key="k1"), Interaction("u1", "nope", 2.0, key="k2")]
    with pytest.raises(UnknownItemError, match="nope"):
        stocked.add_events(batch)
    assert stocked.counts()["events"] == 0 and stocked.counts()["users"] == 0


def test_history_is_in_time_order(stocked):
    stocked.add_events([Interaction("u", "b", 20.0), Interaction("u", "a", 10.0)])
    assert [e.item_id for e in stocked.history("u")] == ["a", "b"]
    assert stocked.history("someone-else") == []


def test_items_upsert_updates_in_place(stocked):
    stocked.upsert_items([Item("a", "Alpha, remastered", year=2001)])
    (a,) = stocked.get_items(["a"])
    assert a.title == "Alpha, remastered" and a.year == 2001
    assert stocked.counts()["items"] == 2


def test_impressions_are_recorded(stocked):
    impression = stocked.add_impression("u", ["a", "b"], [0.9, 0.1], "retrieval", candidates=["b", "a"])
    assert len(impression) == 32 and stocked.counts()["impressions"] == 1
    shown = stocked.impression(impression)
    assert shown.item_ids == ("a", "b") and shown.candidates == ("b", "a") and shown.model == "retrieval"
    assert shown.scores == (0.9, 0.1) and shown.user_id == "u" and shown.id == impression
    assert stocked.impression("nope") is None


def test_forget_user_removes_events_and_impressions(stocked):
    stocked.add_events(
        [
            Interaction("u", "a", 1.0, "click"),
            Interaction("u", "b", 2.0, "like"),
            Interaction("other", "a", 1.0, "click"),
        ]
    )
    stocked.add_impression("u", ["a"], [1.0], "retrieval")
    assert stocked.forget_user("u") == {"events": 2, "impressions": 1, "users": 1, "api_key_bindings": 0}
    assert stocked.counts()["events"] == 1  # other users keep theirs
    assert stocked.history("u") == [] and not stocked.has_user("u")
    assert stocked.forget_user("u") == {"events": 0, "impressions": 0, "users": 0, "api_key_bindings": 0}


def test_store_survives_reopen(stocked):
    stocked.add_events([Interaction("u", "a", 1.0, key="x")])
    again = SQLStore(stocked.url)
    assert again.counts()["events"] == 1 and again.add_events([Interaction("u", "a", 1.0, key="x")]) == 0


def test_idempotency_keys_are_scoped_per_user(stocked):
    assert stocked.add_events([Interaction("alice", "a", 1.0, "like", key="K")]) == 1
    assert stocked.add_events([Interaction("bob", "b", 2.0, "like", key="K")]) == 1  # another user's K
    assert stocked.add_events([Interaction("bob", "b", 2.0, "like", key="K")]) == 0  # bob's retry
    assert [e.item_id for e in stocked.history("alice")] == ["a"]
    assert [e.item_id for e in stocked.history("bob")] == ["b"]


def test_a_key_reused_with_another_payload_is_refused_and_nothing_lands(stocked):
    from agent.store import IdempotencyConflictError

    stocked.upsert_items([Item("c", "Gamma")])
    assert stocked.add_events([Interaction("u", "a", 1.0, "like", key="K")]) == 1
    assert stocked.add_events([Interaction("u", "a", 9.0, "like", key="K")]) == 0  # a retry; its time may differ
    with pytest.raises(IdempotencyConflictError, match=r"another kind \(kind='like'\)"):
        stocked.add_events([Interaction("u", "a", 1.0, "dislike", key="K")])
    batch = [Interaction("u", "b", 2.0, "like", key="new"), Interaction("u", "c", 2.0, "like", key="K")]
    with pytest.raises(IdempotencyConflictError, match="another item_id"):
        stocked.add_events(batch)  # all or nothing: the new event of the batch did not land either
    with pytest.raises(IdempotencyConflictError, match="another item_id"):  # one key twice in one batch
        stocked.add_events([Interaction("u", "b", 2.0, "like", key="L"), Interaction("u", "c", 2.0, "like", key="L")])
    assert [(e.item_id, e.kind) for e in stocked.history("u")] == [("a", "like")]


def test_a_store_with_globally_unique_keys_is_migrated_once(tmp_path):
    from agent.store import SQLiteStore

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)  # the events table as stores before per-user keys wrote it
    old.executescript("""
        CREATE TABLE items (id TEXT PRIMARY KEY, title TEXT NOT NULL, text TEXT NOT NULL, categories TEXT NOT NULL,
                            year INTEGER, metadata TEXT NOT NULL, updated_at REAL NOT NULL);
        CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE,
                             user_id TEXT NOT NULL, item_id TEXT NOT NULL, kind TEXT NOT NULL, value REAL,
                             ts REAL NOT NULL, received_at REAL NOT NULL, impression_id TEXT);
        INSERT INTO items VALUES ('a', 'Alpha', '', '[]', NULL, '{}', 0);
        INSERT INTO events (key, user_id, item_id, kind, value, ts, received_at)
            VALUES ('K', 'alice', 'a', 'like', 1, 1, 1);
        INSERT INTO events (key, user_id, item_id, kind, value, ts, received_at)
            VALUES ('L', 'alice', 'a', 'click', NULL, 2, 2);
    """)
    old.close()
    store = SQLiteStore(path)
    assert [(e.key, e.kind) for e in store.history("alice")] == [("K", "like"), ("L", "click")]  # nothing lost
    assert store.add_events([Interaction("bob", "a", 3.0, "like", key="K")]) == 1
    assert store.add_events([Interaction("alice", "a", 1.0, "like", 1.0, key="K")]) == 0  # her retry
    store.close()
    again = SQLiteStore(path)  # reopening changes nothing
    assert again.counts()["events"] == 3
    assert again.add_events([Interaction("carol", "a", 4.0, "like", key="M")]) == 1
    rows = sqlite3.connect(path).execute("SELECT seq, user_id, key FROM events ORDER BY seq").fetchall()
    # The order of arrival survives the rebuild (a skipped retry may use up a sequence number).
    assert [r[1:] for r in rows] == [("alice", "K"), ("alice", "L"), ("bob", "K"), ("carol", "M")]
    assert [r[0] for r in rows[:3]] == [1, 2, 3]
