"""The event store's tables as SQLAlchemy Core ``Table`` objects: what the code reads and writes.

The database gets them from Alembic (``agent/store/migrations``), never from
``metadata.create_all``; ``tests/test_store.py`` checks that the migrations build exactly these
tables (Alembic's ``compare_metadata``). The same definitions serve SQLite and PostgreSQL: JSON
lists and objects are stored as text, times as seconds since the epoch (double precision).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, ForeignKey, Index, Integer, MetaData, Table, Text

metadata = MetaData()

# SQLite needs INTEGER (not BIGINT) for a rowid primary key; PostgreSQL gets a bigint identity.
SEQ = BigInteger().with_variant(Integer(), "sqlite")
SECONDS = Float(precision=53)

items = Table(
    "items",
    metadata,
    Column("id", Text, primary_key=True),
    Column("title", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("categories", Text, nullable=False),  # JSON list
    Column("year", Integer),
    Column("metadata", Text, nullable=False),  # JSON object
    Column("updated_at", SECONDS, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Text, primary_key=True),
    Column("created_at", SECONDS, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("seq", SEQ, primary_key=True, autoincrement=True),  # order of arrival
    Column("key", Text, nullable=False),  # idempotency key, unique per user: a retried write is ignored
    Column("user_id", Text, nullable=False),
    Column("item_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("value", SECONDS),
    Column("ts", SECONDS, nullable=False),
    Column("received_at", SECONDS, nullable=False),
    Column("impression_id", Text),
    Index("events_by_user", "user_id", "ts", "seq"),
    Index("events_key", "user_id", "key", unique=True),
    sqlite_autoincrement=True,
)

impressions = Table(
    "impressions",
    metadata,
    Column("id", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("item_ids", Text, nullable=False),  # JSON list, in the order shown
    Column("scores", Text, nullable=False),  # JSON list
    Column("model", Text, nullable=False),
    Column("created_at", SECONDS, nullable=False),
    Column("candidates", Text, nullable=False, server_default="[]"),  # what the ranker ordered
    Column("texts", Text, nullable=False, server_default="{}"),  # item id -> explanation/draft, prompts
    Index("impressions_by_user", "user_id", "created_at"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("rate", Text, nullable=False),
    Column("hash", Text, nullable=False),  # SHA-256 of the whole key; the key itself is never stored
    Column("created_at", SECONDS, nullable=False),
    Column("revoked_at", SECONDS),
)

api_key_users = Table(  # the users a client key may act for
    "api_key_users",
    metadata,
    Column("key_id", Text, ForeignKey("api_keys.id"), primary_key=True),
    Column("user_id", Text, primary_key=True),
    Index("api_key_users_by_user", "user_id"),
)

exports = Table(  # training-data folders written from this store (forget-me scrubs them)
    "exports",
    metadata,
    Column("path", Text, primary_key=True),
    Column("created_at", SECONDS, nullable=False),
)
