"""The event store (``agent.store.sql``) and its tables (``agent.store.schema``)."""

from agent.store.sql import (
    EventStore,
    IdempotencyConflictError,
    SQLiteStore,
    SQLStore,
    UnknownImpressionError,
    UnknownItemError,
    migrate,
    open_store,
    remove_user_rows,
)

__all__ = [
    "EventStore",
    "IdempotencyConflictError",
    "SQLStore",
    "SQLiteStore",
    "UnknownImpressionError",
    "UnknownItemError",
    "migrate",
    "open_store",
    "remove_user_rows",
]
