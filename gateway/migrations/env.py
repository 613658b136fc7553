"""Alembic environment: the engine comes from gateway.store (config.attributes["engine"]), never from a URL in a file."""
from __future__ import annotations

from alembic import context

from gateway.store import metadata

MIGRATION_LOCK = 7_214_031  # a PostgreSQL advisory lock id: replicas starting together migrate one at a time

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    # render_as_batch: SQLite alters a table by copying it, which Alembic's batch mode does.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():  # SQLite: BEGIN IMMEDIATE (gateway.store), so migrations never run twice at once
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        context.run_migrations()
