"""The event store (``agent.store.sql``) and its tables (``agent.store.schema``)."""

from agent.store.sql import (
    EventStore,
    SQLiteStore,
    SQLStore,
    UnknownImpressionError,
    UnknownItemError,
    database_url,
    migrate,
    open_store,
    remove_user_rows,
)

__all__ = [
    "EventStore",
    "SQLStore",
    "SQLiteStore",
    "UnknownImpressionError",
    "UnknownItemError",
    "database_url",
    "migrate",
    "open_store",
    "remove_user_rows",
]
