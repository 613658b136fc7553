"""Alembic environment: the engine comes from gateway.storage (config.attributes["engine"]), never from a URL in a file."""
from __future__ import annotations

from alembic import context

from gateway.storage.dialects import dialect_for
from gateway.storage.schema import metadata

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    # render_as_batch: SQLite alters a table by copying it, which Alembic's batch mode does.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():  # SQLite: BEGIN IMMEDIATE (gateway.storage.dialects)
        dialect_for(engine.url).lock_migrations(connection)  # replicas starting together migrate one at a time
        context.run_migrations()
