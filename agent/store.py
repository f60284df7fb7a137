"""The event store: catalog items, users, append-only interaction events and impressions.

``EventStore`` is the narrow interface the rest of Muse uses; ``SQLiteStore`` (WAL mode) is the
embedded default. A server database can implement the same methods later without the callers
changing. Writes of a batch happen in one transaction: all of it lands, or none of it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from agent.catalog import TEXT_RATING_KINDS, Impression, Interaction, InvalidRequestError, Item

# The events table and its indexes, apart so that a migration can rebuild them.
EVENTS_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,                 -- idempotency key, unique per user: a retried write is ignored
    user_id TEXT NOT NULL, item_id TEXT NOT NULL, kind TEXT NOT NULL, value REAL,
    ts REAL NOT NULL, received_at REAL NOT NULL, impression_id TEXT
)""",
    "CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id, ts, seq)",
    "CREATE UNIQUE INDEX IF NOT EXISTS events_key ON events (user_id, key)",
)
SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, text TEXT NOT NULL, categories TEXT NOT NULL,
    year INTEGER, metadata TEXT NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, created_at REAL NOT NULL);
"""
    + ";\n".join(EVENTS_SCHEMA)
    + """;
CREATE TABLE IF NOT EXISTS impressions (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, item_ids TEXT NOT NULL, scores TEXT NOT NULL,
    model TEXT NOT NULL, created_at REAL NOT NULL,
    candidates TEXT NOT NULL DEFAULT '[]',  -- what the ranker ordered, in retrieval order
    texts TEXT NOT NULL DEFAULT '{}'  -- item id -> {"explanation"|"draft": {"prompt", "text", "source"}}
);
CREATE INDEX IF NOT EXISTS impressions_by_user ON impressions (user_id, created_at);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, scope TEXT NOT NULL, rate TEXT NOT NULL,
    hash TEXT NOT NULL,                -- SHA-256 of the whole key; the key itself is never stored
    created_at REAL NOT NULL, revoked_at REAL
);
CREATE TABLE IF NOT EXISTS api_key_users (  -- the users a client key may act for
    key_id TEXT NOT NULL REFERENCES api_keys (id), user_id TEXT NOT NULL, PRIMARY KEY (key_id, user_id)
);
CREATE INDEX IF NOT EXISTS api_key_users_by_user ON api_key_users (user_id);
CREATE TABLE IF NOT EXISTS exports (  -- training-data folders written from this store (forget-me scrubs them)
    path TEXT PRIMARY KEY, created_at REAL NOT NULL
);
"""
)


def remove_user_rows(folder: Path, user_id: str) -> dict[str, int]:
    """Drop ``user_id``'s rows from each ``*.jsonl`` file directly in ``folder`` (rows name their
    user in a ``user_id`` field, as ``muse finetune build-data`` writes them), and correct the
    counts in its ``report.json``. Each changed file is written to a temporary name, then renamed:
    a crash leaves the old file or the new one, never half of one. Returns rows removed per file
    (files that had none are left out)."""
    removed: dict[str, int] = {}
    for file in sorted(Path(folder).glob("*.jsonl")):
        lines = file.read_text().splitlines(keepends=True)
        kept = [line for line in lines if not line.strip() or json.loads(line).get("user_id") != user_id]
        if len(kept) == len(lines):
            continue
        tmp = file.with_name(f".{file.name}.tmp")
        tmp.write_text("".join(kept))
        tmp.replace(file)
        removed[file.name] = len(lines) - len(kept)
    report_file = Path(folder) / "report.json"
    if removed and report_file.exists():
        report = json.loads(report_file.read_text())
        for name, n in removed.items():
            if name in report.get("files", {}):
                report["files"][name] -= n
        report["forgotten_rows"] = report.get("forgotten_rows", 0) + sum(removed.values())
        tmp = report_file.with_name(".report.json.tmp")
        tmp.write_text(json.dumps(report, indent=2))
        tmp.replace(report_file)
    return removed


class UnknownItemError(KeyError):
    """An event names an item the catalog does not hold."""

    def __str__(self) -> str:  # KeyError's str() would add quotes around the message
        return str(self.args[0]) if self.args else ""


class UnknownImpressionError(KeyError):
    """An event names an impression that was not shown to that user."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class EventStore(Protocol):
    def upsert_items(self, items: Iterable[Item]) -> int: ...
    def items(self) -> list[Item]: ...
    def get_items(self, ids: Sequence[str]) -> list[Item]: ...
    def add_events(self, events: Iterable[Interaction]) -> int: ...
    def history(self, user_id: str) -> list[Interaction]: ...
    def events(self) -> list[Interaction]: ...
    def add_impression(
        self,
        user_id: str,
        item_ids: Sequence[str],
        scores: Sequence[float],
        model: str,
        candidates: Sequence[str] = (),
        created_at: float | None = None,
        texts: dict | None = None,
    ) -> str: ...
    def impression(self, impression_id: str) -> Impression | None: ...
    def impressions(self) -> list[Impression]: ...
    def forget_user(self, user_id: str) -> dict[str, int]: ...
    def add_api_key(self, row: dict, users: Sequence[str]) -> None: ...
    def api_key(self, key_id: str) -> dict | None: ...
    def api_keys(self) -> list[dict]: ...
    def revoke_api_key(self, key_id: str) -> bool: ...
    def add_export(self, path: Path) -> None: ...
    def exports(self) -> list[Path]: ...
    def has_user(self, user_id: str) -> bool: ...
    def user_event_counts(self, limit: int = 1000) -> list[tuple[str, int]]: ...
    def counts(self) -> dict[str, int]: ...


def _item_row(item: Item, now: float) -> tuple:
    return (
        item.id,
        item.title,
        item.text,
        json.dumps(list(item.categories)),
        item.year,
        json.dumps(item.metadata, sort_keys=True),
        now,
    )


def _row_item(row: sqlite3.Row) -> Item:
    return Item(
        id=row["id"],
        title=row["title"],
        text=row["text"],
        categories=tuple(json.loads(row["categories"])),
        year=row["year"],
        metadata=json.loads(row["metadata"]),
    )


def _row_event(row: sqlite3.Row) -> Interaction:
    return Interaction(
        user_id=row["user_id"],
        item_id=row["item_id"],
        timestamp=row["ts"],
        kind=row["kind"],
        value=row["value"],
        key=row["key"],
        impression_id=row["impression_id"],
    )


def _row_impression(r: sqlite3.Row) -> Impression:
    return Impression(
        id=r["id"],
        user_id=r["user_id"],
        item_ids=tuple(json.loads(r["item_ids"])),
        scores=tuple(json.loads(r["scores"])),
        model=r["model"],
        created_at=r["created_at"],
        candidates=tuple(json.loads(r["candidates"])),
        texts=json.loads(r["texts"]),
    )


class SQLiteStore:
    """EventStore on one SQLite file in WAL mode (readers do not block the writer)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)
        columns = {r["name"] for r in self._conn.execute("PRAGMA table_info(events)")}
        if "impression_id" not in columns:  # stores written before events carried impressions
            self._conn.execute("ALTER TABLE events ADD COLUMN impression_id TEXT")
        self._scope_keys_per_user()
        columns = {r["name"] for r in self._conn.execute("PRAGMA table_info(impressions)")}
        if "candidates" not in columns:
            self._conn.execute("ALTER TABLE impressions ADD COLUMN candidates TEXT NOT NULL DEFAULT '[]'")
        if "texts" not in columns:
            self._conn.execute("ALTER TABLE impressions ADD COLUMN texts TEXT NOT NULL DEFAULT '{}'")

    def _scope_keys_per_user(self) -> None:
        """Stores written before idempotency keys were scoped per user held them unique across
        all users (a second user's event with the same key was dropped as a duplicate). SQLite
        cannot drop a column constraint, so the table is rebuilt once, in one transaction."""
        (sql,) = self._conn.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='events'").fetchone()
        if "UNIQUE" not in sql.upper():
            return
        columns = "seq, key, user_id, item_id, kind, value, ts, received_at, impression_id"
        self._write(
            [
                ("ALTER TABLE events RENAME TO events_keyed_globally", ()),
                ("DROP INDEX IF EXISTS events_by_user", ()),  # they moved with the renamed table
                ("DROP INDEX IF EXISTS events_key", ()),
                *((statement, ()) for statement in EVENTS_SCHEMA),
                (f"INSERT INTO events ({columns}) SELECT {columns} FROM events_keyed_globally", ()),
                ("DROP TABLE events_keyed_globally", ()),
            ]
        )

    def close(self) -> None:
        self._conn.close()

    def _write(self, statements: Iterable[tuple[str, Sequence]]) -> list[int]:
        """Run statements in one transaction; returns each statement's changed-row count."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                changed = [self._conn.execute(sql, args).rowcount for sql, args in statements]
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return changed

    def _read(self, sql: str, args: Sequence = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # ------------------------------------------------------------ items

    def upsert_items(self, items: Iterable[Item]) -> int:
        now = time.time()
        sql = (
            "INSERT INTO items VALUES (?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
            "title=excluded.title, text=excluded.text, categories=excluded.categories, "
            "year=excluded.year, metadata=excluded.metadata, updated_at=excluded.updated_at"
        )
        return sum(self._write((sql, _item_row(item, now)) for item in items))

    def items(self) -> list[Item]:
        return [_row_item(r) for r in self._read("SELECT * FROM items ORDER BY id")]

    def get_items(self, ids: Sequence[str]) -> list[Item]:
        """The items named, in the order named; unknown ids are left out."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = {r["id"]: _row_item(r) for r in self._read(f"SELECT * FROM items WHERE id IN ({marks})", ids)}
        return [rows[i] for i in ids if i in rows]

    # ------------------------------------------------------------ events

    def add_events(self, events: Iterable[Interaction]) -> int:
        """Append events; ones whose idempotency key is already stored for the same user are
        skipped (keys are scoped per user: two users may use the same key).

        Returns how many were new. An event naming an unknown item fails the whole batch.
        """
        events = list(events)
        known = {i.id for i in self.get_items(sorted({e.item_id for e in events}))}
        # A batch answering one impression names it once per event: read each impression once.
        named = {i: self.impression(i) for i in {e.impression_id for e in events if e.impression_id is not None}}
        for e in events:
            if e.item_id not in known:
                raise UnknownItemError(f"event of user {e.user_id!r} names unknown item {e.item_id!r}")
            if e.kind in TEXT_RATING_KINDS and e.impression_id is None:
                raise InvalidRequestError(f"a {e.kind} event rates a text Muse showed: it needs the impression_id")
            if e.impression_id is not None:
                shown = named[e.impression_id]
                if shown is None or shown.user_id != e.user_id:
                    raise UnknownImpressionError(
                        f"event of user {e.user_id!r} names impression {e.impression_id!r}, "
                        "which was not shown to that user"
                    )
                if e.kind in TEXT_RATING_KINDS and e.item_id not in shown.item_ids:
                    raise UnknownImpressionError(
                        f"{e.kind} event names item {e.item_id!r}, which impression {e.impression_id!r} did not show"
                    )
        now = time.time()
        statements: list[tuple[str, Sequence]] = [
            ("INSERT OR IGNORE INTO users VALUES (?, ?)", (u, now)) for u in sorted({e.user_id for e in events})
        ]
        statements += [
            (
                (
                    "INSERT OR IGNORE INTO events (key, user_id, item_id, kind, value, ts, received_at, "
                    "impression_id) VALUES (?,?,?,?,?,?,?,?)"
                ),
                (e.idempotency_key(), e.user_id, e.item_id, e.kind, e.value, e.timestamp, now, e.impression_id),
            )
            for e in events
        ]
        return sum(self._write(statements)[-len(events) :]) if events else 0

    def history(self, user_id: str) -> list[Interaction]:
        rows = self._read("SELECT * FROM events WHERE user_id = ? ORDER BY ts, seq", (user_id,))
        return [_row_event(r) for r in rows]

    def events(self) -> list[Interaction]:
        return [_row_event(r) for r in self._read("SELECT * FROM events ORDER BY seq")]

    # ------------------------------------------------------------ impressions

    def add_impression(
        self,
        user_id: str,
        item_ids: Sequence[str],
        scores: Sequence[float],
        model: str,
        candidates: Sequence[str] = (),
        created_at: float | None = None,
        texts: dict | None = None,
    ) -> str:
        """Log what was shown; ``created_at`` defaults to now (a replay gives its own clock);
        ``texts`` keeps the explanation and draft of each shown item with their prompts, so a
        rating of a text can become training data."""
        impression_id = uuid.uuid4().hex
        self._write(
            [
                (
                    (
                        "INSERT INTO impressions (id, user_id, item_ids, scores, model, created_at, candidates, "
                        "texts) VALUES (?,?,?,?,?,?,?,?)"
                    ),
                    (
                        impression_id,
                        user_id,
                        json.dumps(list(item_ids)),
                        json.dumps(list(scores)),
                        model,
                        time.time() if created_at is None else created_at,
                        json.dumps(list(candidates)),
                        json.dumps(texts or {}),
                    ),
                )
            ]
        )
        return impression_id

    def impression(self, impression_id: str) -> Impression | None:
        rows = self._read("SELECT * FROM impressions WHERE id = ?", (impression_id,))
        return _row_impression(rows[0]) if rows else None

    def impressions(self) -> list[Impression]:
        return [_row_impression(r) for r in self._read("SELECT * FROM impressions ORDER BY created_at, id")]

    def forget_user(self, user_id: str) -> dict[str, int]:
        """Delete everything stored about a user, in one transaction: events, impressions, the
        user row and client keys' bindings to them; returns rows deleted per table."""
        events, impressions, users, bindings = self._write(
            [
                ("DELETE FROM events WHERE user_id = ?", (user_id,)),
                ("DELETE FROM impressions WHERE user_id = ?", (user_id,)),
                ("DELETE FROM users WHERE id = ?", (user_id,)),
                ("DELETE FROM api_key_users WHERE user_id = ?", (user_id,)),
            ]
        )
        return {"events": events, "impressions": impressions, "users": users, "api_key_bindings": bindings}

    # ------------------------------------------------------------ API keys

    def add_api_key(self, row: dict, users: Sequence[str]) -> None:
        """Store a key (``row``: id, name, scope, rate, hash, created_at) and the users it may
        act for, in one transaction."""
        self._write(
            [
                (
                    "INSERT INTO api_keys (id, name, scope, rate, hash, created_at) VALUES (?,?,?,?,?,?)",
                    (row["id"], row["name"], row["scope"], row["rate"], row["hash"], row["created_at"]),
                ),
                *(("INSERT INTO api_key_users VALUES (?, ?)", (row["id"], u)) for u in users),
            ]
        )

    def api_key(self, key_id: str) -> dict | None:
        """The key's row plus ``users`` (a sorted list), or None."""
        rows = self._read("SELECT * FROM api_keys WHERE id = ?", (key_id,))
        if not rows:
            return None
        users = self._read("SELECT user_id FROM api_key_users WHERE key_id = ? ORDER BY user_id", (key_id,))
        return {**dict(rows[0]), "users": [r["user_id"] for r in users]}

    def api_keys(self) -> list[dict]:
        ids = [r["id"] for r in self._read("SELECT id FROM api_keys ORDER BY created_at, id")]
        return [key for key in map(self.api_key, ids) if key is not None]

    def revoke_api_key(self, key_id: str) -> bool:
        """Mark a key revoked (kept, for the record); False if no live key has that id."""
        (changed,) = self._write(
            [("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (time.time(), key_id))]
        )
        return bool(changed)

    # ------------------------------------------------------------ exported training data

    def add_export(self, path: Path) -> None:
        """Remember a folder of training data built from this store, so forgetting a user can
        remove their rows from it too."""
        self._write([("INSERT OR REPLACE INTO exports VALUES (?, ?)", (str(Path(path).resolve()), time.time()))])

    def exports(self) -> list[Path]:
        return [Path(r["path"]) for r in self._read("SELECT path FROM exports ORDER BY path")]

    def has_user(self, user_id: str) -> bool:
        return bool(self._read("SELECT 1 FROM users WHERE id = ?", (user_id,)))

    def user_event_counts(self, limit: int = 1000) -> list[tuple[str, int]]:
        """``(user id, number of events)`` of up to ``limit`` users, in id order."""
        rows = self._read(
            "SELECT user_id, COUNT(*) AS n FROM events GROUP BY user_id ORDER BY user_id LIMIT ?", (limit,)
        )
        return [(r["user_id"], r["n"]) for r in rows]

    def counts(self) -> dict[str, int]:
        tables = ("items", "users", "events", "impressions")
        return {t: self._read(f"SELECT COUNT(*) FROM {t}")[0][0] for t in tables}
