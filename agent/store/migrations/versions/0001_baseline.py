"""Baseline: the event store's tables as of Muse's first Alembic revision.

Stores written before Muse used Alembic (SQLite files whose tables the old start-up code made)
are brought to this schema too: tables and columns they lack are added, and an events table
whose idempotency keys were unique across all users (a second user's event with the same key
was dropped) is rebuilt with keys unique per user, keeping every row and its order of arrival.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SECONDS = sa.Float(precision=53)
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
EVENT_COLUMNS = "seq, key, user_id, item_id, kind, value, ts, received_at, impression_id"


def _events_table(name: str = "events") -> None:
    op.create_table(
        name,
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("item_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("value", SECONDS),
        sa.Column("ts", SECONDS, nullable=False),
        sa.Column("received_at", SECONDS, nullable=False),
        sa.Column("impression_id", sa.Text),
        sqlite_autoincrement=True,
        if_not_exists=True,
    )
    op.create_index("events_by_user", "events", ["user_id", "ts", "seq"], if_not_exists=True)
    op.create_index("events_key", "events", ["user_id", "key"], unique=True, if_not_exists=True)


def _columns(table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def _bring_pre_alembic_events_up() -> None:
    """SQLite files from before Alembic: add ``impression_id``; scope keys per user."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite" or not sa.inspect(bind).has_table("events"):
        return
    if "impression_id" not in _columns("events"):
        op.add_column("events", sa.Column("impression_id", sa.Text))
    (sql,) = bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type='table' AND name='events'").one()
    if "UNIQUE" not in sql.upper():
        return
    op.rename_table("events", "events_keyed_globally")
    op.execute("DROP INDEX IF EXISTS events_by_user")  # they moved with the renamed table
    op.execute("DROP INDEX IF EXISTS events_key")
    _events_table()
    op.execute(f"INSERT INTO events ({EVENT_COLUMNS}) SELECT {EVENT_COLUMNS} FROM events_keyed_globally")
    op.drop_table("events_keyed_globally")


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("categories", sa.Text, nullable=False),
        sa.Column("year", sa.Integer),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("updated_at", SECONDS, nullable=False),
        if_not_exists=True,
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("created_at", SECONDS, nullable=False),
        if_not_exists=True,
    )
    _bring_pre_alembic_events_up()
    _events_table()
    op.create_table(
        "impressions",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("item_ids", sa.Text, nullable=False),
        sa.Column("scores", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("created_at", SECONDS, nullable=False),
        sa.Column("candidates", sa.Text, nullable=False, server_default="[]"),
        sa.Column("texts", sa.Text, nullable=False, server_default="{}"),
        if_not_exists=True,
    )
    for column in ("candidates", "texts"):  # pre-Alembic impressions tables
        if column not in _columns("impressions"):
            default = "[]" if column == "candidates" else "{}"
            op.add_column("impressions", sa.Column(column, sa.Text, nullable=False, server_default=default))
    op.create_index("impressions_by_user", "impressions", ["user_id", "created_at"], if_not_exists=True)
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("rate", sa.Text, nullable=False),
        sa.Column("hash", sa.Text, nullable=False),
        sa.Column("created_at", SECONDS, nullable=False),
        sa.Column("revoked_at", SECONDS),
        if_not_exists=True,
    )
    op.create_table(
        "api_key_users",
        sa.Column("key_id", sa.Text, sa.ForeignKey("api_keys.id"), primary_key=True),
        sa.Column("user_id", sa.Text, primary_key=True),
        if_not_exists=True,
    )
    op.create_index("api_key_users_by_user", "api_key_users", ["user_id"], if_not_exists=True)
    op.create_table(
        "exports",
        sa.Column("path", sa.Text, primary_key=True),
        sa.Column("created_at", SECONDS, nullable=False),
        if_not_exists=True,
    )


def downgrade() -> None:
    for table in ("exports", "api_key_users", "api_keys", "impressions", "events", "users", "items"):
        op.drop_table(table)
