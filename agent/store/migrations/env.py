"""Alembic's environment for the event store: run on the connection ``agent.store`` hands over.

Muse upgrades its own database when a store opens (``SQLStore._migrate``); the ``alembic``
command works too, given ``-x url=...``:

    alembic -c agent/store/migrations/alembic.ini -x url=postgresql+psycopg://... upgrade head
"""

from alembic import context
from sqlalchemy import create_engine

from agent.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # the alembic command line
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("give the database: alembic ... -x url=sqlite:///PATH|postgresql+psycopg://...")
    with create_engine(url).connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
else:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
