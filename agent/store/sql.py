"""The event store: catalog items, users, append-only interaction events and impressions.

``EventStore`` is the narrow interface the rest of Muse uses. ``SQLStore`` implements it with
SQLAlchemy Core on two engines, chosen by URL (``MUSE_DATABASE_URL``):

- ``sqlite:///PATH``: one file in WAL mode (readers do not block the writer), the embedded default;
- ``postgresql://USER@HOST:PORT/DB``: a PostgreSQL server, which several Muse processes can share.

The schema belongs to Alembic (``agent/store/migrations``): opening a store upgrades it to the
newest revision, in one transaction that holds the database's lock (SQLite ``BEGIN EXCLUSIVE``,
a PostgreSQL advisory lock), so replicas starting together migrate once. Each write is one
transaction: a batch lands whole or not at all. Idempotency rests on unique keys in the database
(``INSERT ... ON CONFLICT DO NOTHING``), so it holds across processes, not only threads.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agent.catalog import TEXT_RATING_KINDS, Impression, Interaction, InvalidRequestError, Item
from agent.config import database_url, sqlite_path
from agent.store import schema as t

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine, RowMapping

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK = 0x6D757365  # PostgreSQL advisory lock key ("muse")


class UnknownItemError(KeyError):
    """An event names an item the catalog does not hold."""

    def __str__(self) -> str:  # KeyError's str() would add quotes around the message
        return str(self.args[0]) if self.args else ""


class IdempotencyConflictError(ValueError):
    """An event reuses an idempotency key its user already sent (in the store or earlier in the
    same batch) with a different payload: a retry must repeat the event, not change it."""


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
    def user_event_counts(
        self, limit: int = 1000, users: Collection[str] | None = None, after: str | None = None
    ) -> list[tuple[str, int]]: ...
    def counts(self) -> dict[str, int]: ...
    def catalog_summary(self) -> tuple[int, int | None, int | None]: ...


def _item_row(item: Item, now: float) -> dict[str, Any]:
    return {
        "id": item.id,
        "title": item.title,
        "text": item.text,
        "categories": json.dumps(list(item.categories)),
        "year": item.year,
        "metadata": json.dumps(item.metadata, sort_keys=True),
        "updated_at": now,
    }


def _row_item(row: RowMapping) -> Item:
    return Item(
        id=row["id"],
        title=row["title"],
        text=row["text"],
        categories=tuple(json.loads(row["categories"])),
        year=row["year"],
        metadata=json.loads(row["metadata"]),
    )


def _row_event(row: RowMapping) -> Interaction:
    return Interaction(
        user_id=row["user_id"],
        item_id=row["item_id"],
        timestamp=row["ts"],
        kind=row["kind"],
        value=row["value"],
        key=row["key"],
        impression_id=row["impression_id"],
    )


def _row_impression(r: RowMapping) -> Impression:
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


def _engine(url: str, *, migrating: bool = False) -> Engine:
    """An engine for ``url``. SQLite: WAL, a 30 s busy timeout, and (``migrating``) transactions
    that begin EXCLUSIVE and hold the DDL too (pysqlite would otherwise commit before each DDL
    statement; the event hooks are SQLAlchemy's documented recipe for SQLite transactions)."""
    from sqlalchemy import create_engine, event

    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        if migrating:
            dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    if migrating:

        @event.listens_for(engine, "begin")
        def _begin(connection) -> None:
            connection.exec_driver_sql("BEGIN EXCLUSIVE")

    return engine


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` (a Muse database URL) to Alembic ``revision``, in one
    transaction under the database's lock; a database already there is left as it is."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    url = database_url(url)
    if (path := sqlite_path(url)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = _engine(url, migrating=True)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


class SQLStore:
    """EventStore on SQLite or PostgreSQL (module docstring). ``url``: a Muse database URL.

    Raises ``ValueError`` for an unsupported URL, and SQLAlchemy's ``OperationalError`` when the
    database cannot be reached. Safe to share between threads; several processes may open the
    same database (PostgreSQL for more than one machine).
    """

    def __init__(self, url: str):
        self.url = database_url(url)
        self.path = sqlite_path(self.url)
        migrate(self.url)
        self._engine = _engine(self.url)
        self._dialect = self._engine.dialect.name

    def __str__(self) -> str:
        """The database URL with any password hidden (for messages and logs)."""
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)

    def close(self) -> None:
        self._engine.dispose()

    def _insert(self, table):
        """The dialect's INSERT, which has ``on_conflict_do_nothing`` / ``_do_update``."""
        if self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table)

    def _write(self) -> Connection:
        """A connection in one transaction: ``with self._write() as c:`` commits at the end, or
        rolls back on an error."""
        return self._engine.begin()

    def _read(self, statement, args: dict | None = None) -> list[RowMapping]:
        with self._engine.connect() as c:
            return list(c.execute(statement, args or {}).mappings())

    # ------------------------------------------------------------ items

    def upsert_items(self, items: Iterable[Item]) -> int:
        now = time.time()
        rows = [_item_row(item, now) for item in items]
        if not rows:
            return 0
        insert = self._insert(t.items)
        statement = insert.on_conflict_do_update(
            index_elements=["id"], set_={c: insert.excluded[c] for c in rows[0] if c != "id"}
        )
        with self._write() as c:
            c.execute(statement, rows)
        return len(rows)

    def items(self) -> list[Item]:
        from sqlalchemy import select

        return [_row_item(r) for r in self._read(select(t.items).order_by(t.items.c.id))]

    def get_items(self, ids: Sequence[str]) -> list[Item]:
        """The items named, in the order named; unknown ids are left out."""
        from sqlalchemy import select

        if not ids:
            return []
        rows = self._read(select(t.items).where(t.items.c.id.in_(list(ids))))
        found = {r["id"]: _row_item(r) for r in rows}
        return [found[i] for i in ids if i in found]

    # ------------------------------------------------------------ events

    def _check_events(self, events: list[Interaction]) -> None:
        """Raise ``UnknownItemError``, ``InvalidRequestError`` or ``UnknownImpressionError`` for
        the first event that names an unknown item, or an impression not shown to its user."""
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

    def add_events(self, events: Iterable[Interaction]) -> int:
        """Append events; ones whose idempotency key is already stored for the same user are
        skipped (keys are scoped per user: two users may use the same key). The unique index
        decides, so a retry that reaches another process at the same moment is skipped too.

        Returns how many were new. An event naming an unknown item fails the whole batch.
        """
        events = list(events)
        if not events:
            return 0
        self._check_events(events)
        now = time.time()
        new_users = [{"id": u, "created_at": now} for u in sorted({e.user_id for e in events})]
        rows = [
            {
                "key": e.idempotency_key(),
                "user_id": e.user_id,
                "item_id": e.item_id,
                "kind": e.kind,
                "value": e.value,
                "ts": e.timestamp,
                "received_at": now,
                "impression_id": e.impression_id,
            }
            for e in events
        ]
        insert = self._insert(t.events).on_conflict_do_nothing(index_elements=["user_id", "key"])
        with self._write() as c:
            c.execute(self._insert(t.users).on_conflict_do_nothing(index_elements=["id"]), new_users)
            # RETURNING names the rows that landed (row counts of multi-row and ON CONFLICT
            # inserts are not reliable on every driver); SQLAlchemy batches the rows.
            landed = c.execute(insert.returning(t.events.c.seq), rows).all()
            if len(landed) < len(rows):
                self._check_repeats(c, rows)  # raises, and the whole batch rolls back
            return len(landed)

    # What a repeated event must carry again to be the same event. The timestamp is left out: an
    # event sent without one gets the time it arrived, which differs from retry to retry.
    _SAME_EVENT = ("item_id", "kind", "value", "impression_id")

    def _check_repeats(self, c: Connection, rows: list[dict]) -> None:
        """Raises ``IdempotencyConflictError`` for the first row whose (user, key) is stored
        with another payload (``_SAME_EVENT``); rows are compared after this batch's inserts,
        so two rows of one batch with one key and different payloads conflict too."""
        from sqlalchemy import select

        e = t.events
        stored = {}
        for user in sorted({r["user_id"] for r in rows}):
            keys = sorted({r["key"] for r in rows if r["user_id"] == user})
            for start in range(0, len(keys), 500):  # bound the IN list
                query = select(e).where(e.c.user_id == user, e.c.key.in_(keys[start : start + 500]))
                stored.update({(row["user_id"], row["key"]): row for row in c.execute(query).mappings()})
        for row in rows:
            kept = stored[(row["user_id"], row["key"])]
            changed = [f for f in self._SAME_EVENT if kept[f] != row[f]]
            if changed:
                raise IdempotencyConflictError(
                    f"user {row['user_id']!r} already sent idempotency key {row['key']!r} with another "
                    f"{', '.join(changed)} ({', '.join(f'{f}={kept[f]!r}' for f in changed)}): "
                    "a retry must repeat the same event; a new event needs a new key"
                )

    def history(self, user_id: str) -> list[Interaction]:
        from sqlalchemy import select

        e = t.events
        rows = self._read(select(e).where(e.c.user_id == user_id).order_by(e.c.ts, e.c.seq))
        return [_row_event(r) for r in rows]

    def events(self) -> list[Interaction]:
        from sqlalchemy import select

        return [_row_event(r) for r in self._read(select(t.events).order_by(t.events.c.seq))]

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
        rating of a text can become training data. Returns the impression id (32 hex digits)."""
        impression_id = uuid.uuid4().hex
        row = {
            "id": impression_id,
            "user_id": user_id,
            "item_ids": json.dumps(list(item_ids)),
            "scores": json.dumps(list(scores)),
            "model": model,
            "created_at": time.time() if created_at is None else created_at,
            "candidates": json.dumps(list(candidates)),
            "texts": json.dumps(texts or {}),
        }
        with self._write() as c:
            c.execute(t.impressions.insert(), row)
        return impression_id

    def impression(self, impression_id: str) -> Impression | None:
        from sqlalchemy import select

        rows = self._read(select(t.impressions).where(t.impressions.c.id == impression_id))
        return _row_impression(rows[0]) if rows else None

    def impressions(self) -> list[Impression]:
        from sqlalchemy import select

        i = t.impressions
        return [_row_impression(r) for r in self._read(select(i).order_by(i.c.created_at, i.c.id))]

    def forget_user(self, user_id: str) -> dict[str, int]:
        """Delete everything stored about a user, in one transaction: events, impressions, the
        user row and client keys' bindings to them; returns rows deleted per table."""
        from sqlalchemy import delete

        with self._write() as c:
            return {
                "events": c.execute(delete(t.events).where(t.events.c.user_id == user_id)).rowcount,
                "impressions": c.execute(delete(t.impressions).where(t.impressions.c.user_id == user_id)).rowcount,
                "users": c.execute(delete(t.users).where(t.users.c.id == user_id)).rowcount,
                "api_key_bindings": c.execute(
                    delete(t.api_key_users).where(t.api_key_users.c.user_id == user_id)
                ).rowcount,
            }

    # ------------------------------------------------------------ API keys

    def add_api_key(self, row: dict, users: Sequence[str]) -> None:
        """Store a key (``row``: id, name, scope, rate, hash, created_at) and the users it may
        act for, in one transaction."""
        fields = ("id", "name", "scope", "rate", "hash", "created_at")
        with self._write() as c:
            c.execute(t.api_keys.insert(), {f: row[f] for f in fields})
            if users:
                c.execute(t.api_key_users.insert(), [{"key_id": row["id"], "user_id": u} for u in users])

    def api_key(self, key_id: str) -> dict | None:
        """The key's row plus ``users`` (a sorted list), or None."""
        from sqlalchemy import select

        rows = self._read(select(t.api_keys).where(t.api_keys.c.id == key_id))
        if not rows:
            return None
        b = t.api_key_users
        users = self._read(select(b.c.user_id).where(b.c.key_id == key_id).order_by(b.c.user_id))
        return {**dict(rows[0]), "users": [r["user_id"] for r in users]}

    def api_keys(self) -> list[dict]:
        from sqlalchemy import select

        k = t.api_keys
        ids = [r["id"] for r in self._read(select(k.c.id).order_by(k.c.created_at, k.c.id))]
        return [key for key in map(self.api_key, ids) if key is not None]

    def revoke_api_key(self, key_id: str) -> bool:
        """Mark a key revoked (kept, for the record); False if no live key has that id."""
        from sqlalchemy import update

        k = t.api_keys
        with self._write() as c:
            changed = c.execute(
                update(k).where(k.c.id == key_id, k.c.revoked_at.is_(None)).values(revoked_at=time.time())
            ).rowcount
        return bool(changed)

    # ------------------------------------------------------------ exported training data

    def add_export(self, path: Path) -> None:
        """Remember a folder of training data built from this store, so forgetting a user can
        remove their rows from it too."""
        insert = self._insert(t.exports)
        statement = insert.on_conflict_do_update(
            index_elements=["path"], set_={"created_at": insert.excluded.created_at}
        )
        with self._write() as c:
            c.execute(statement, {"path": str(Path(path).resolve()), "created_at": time.time()})

    def exports(self) -> list[Path]:
        from sqlalchemy import select

        return [Path(r["path"]) for r in self._read(select(t.exports.c.path).order_by(t.exports.c.path))]

    def has_user(self, user_id: str) -> bool:
        from sqlalchemy import select

        return bool(self._read(select(t.users.c.id).where(t.users.c.id == user_id)))

    def user_event_counts(
        self, limit: int = 1000, users: Collection[str] | None = None, after: str | None = None
    ) -> list[tuple[str, int]]:
        """``(user id, number of events)`` of up to ``limit`` users with events, in id order:
        only those in ``users`` when given (filtered before the limit), only ids after ``after``
        when given (the next page starts after the last id of this one)."""
        from sqlalchemy import func, select

        e = t.events
        statement = select(e.c.user_id, func.count().label("n"))
        if users is not None:
            statement = statement.where(e.c.user_id.in_(sorted(users)))
        if after is not None:
            statement = statement.where(e.c.user_id > after)
        statement = statement.group_by(e.c.user_id).order_by(e.c.user_id).limit(limit)
        return [(r["user_id"], r["n"]) for r in self._read(statement)]

    def catalog_summary(self) -> tuple[int, int | None, int | None]:
        """(items, earliest year, latest year) of the catalog, from the items table alone (one
        aggregate query; no event is read). Years are None when no item has one."""
        from sqlalchemy import func, select

        with self._engine.connect() as c:
            n, low, high = c.execute(
                select(func.count(), func.min(t.items.c.year), func.max(t.items.c.year)).select_from(t.items)
            ).one()
        return int(n), low, high

    def counts(self) -> dict[str, int]:
        """Rows per table: ``items``, ``users``, ``events``, ``impressions``."""
        from sqlalchemy import func, select

        tables = {"items": t.items, "users": t.users, "events": t.events, "impressions": t.impressions}
        with self._engine.connect() as c:
            return {
                name: c.execute(select(func.count()).select_from(table)).scalar_one() for name, table in tables.items()
            }


class SQLiteStore(SQLStore):
    """``SQLStore`` on the SQLite file at ``path`` (made, with its folder, when absent)."""

    def __init__(self, path: Path | str):
        super().__init__(f"sqlite:///{path}")


def open_store(url: str) -> SQLStore:
    """The event store at a Muse database URL (``Settings.store_url``)."""
    return SQLStore(url)


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
