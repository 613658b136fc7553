"""Everything that differs between SQLite and PostgreSQL, in one place: the rest of gateway.storage is the same
SQL for both. `dialect_for(url)` picks the one a database URL names.

SQLite under gunicorn (processes x threads): WAL, synchronous=NORMAL, and every write transaction opened with
BEGIN IMMEDIATE, so a read that turns into a write never meets "database is locked" (the busy timeout does not
cover that upgrade); reads open a plain BEGIN and, under WAL, never wait for the writer.
"""
from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from gateway.storage.schema import scans

LOCK_TIMEOUT_S = 2  # every wait is short: a database that is down or locked must cost a prediction its record, never its answer
BANK_WRITE_WAIT_S = 30  # PostgreSQL: how long a bank write may wait and run (an import is one statement of seconds)
MIGRATION_LOCK = 7_214_031  # a PostgreSQL advisory lock id: replicas starting together migrate one at a time


class Dialect(Protocol):
    """What one database does its own way. Stateless: one instance serves every Storage of its database."""

    chunk_gap_s: float  # between two chunks of a bank import, the write lock is left free this long

    def engine(self, url: str) -> sa.Engine:
        """The engine, its connections set up for short waits."""
        ...

    def writer_lock(self) -> AbstractContextManager:
        """What the write transactions of one process (one Storage) take in turn before they begin."""
        ...

    def lock_migrations(self, conn: sa.Connection) -> None:
        """In a migration's transaction: keep any other process from migrating at the same time."""
        ...

    def one_bank_writer(self, conn: sa.Connection) -> None:
        """In a write transaction: let no other transaction add bank entries until this one ends. Entries must
        become visible in id order: an index takes those after the last id it saw (Index.sync)."""
        ...

    def rows_of(self, table: sa.Table, columns: Mapping[str, Sequence]) -> dict[str, sa.ColumnElement]:
        """Columns of equal length as one bound value that the database unnests into rows, not a bound value
        per row (a bank import of a million rows): each column's SQL expression over those rows."""
        ...

    def fold_log(self, engine: sa.Engine) -> None:
        """Before the last close of the database, by the last process that has it open."""
        ...


class SQLite(Dialect):
    # A scan record waiting in another process sleeps in SQLite's busy handler, which polls every 100 ms once
    # it has waited a while: a shorter gap would pass before it looks.
    chunk_gap_s = 0.1

    def engine(self, url: str) -> sa.Engine:
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": LOCK_TIMEOUT_S, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON",
                           f"busy_timeout={LOCK_TIMEOUT_S * 1000}"):
                cur.execute(f"PRAGMA {pragma}")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn):
            # A write takes the lock up front; a read (execution option `reading`) takes none: WAL lets it read
            # alongside the writer, where BEGIN IMMEDIATE would queue it behind a large import for the busy timeout.
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("reading") else "BEGIN IMMEDIATE")
        return engine

    def writer_lock(self) -> AbstractContextManager:
        # The threads of one process take turns here, where a waiter wakes the moment the lock is free, instead
        # of in SQLite's busy handler, which polls with sleeps of up to 100 ms.
        return threading.Lock()

    def lock_migrations(self, conn: sa.Connection) -> None:
        pass  # the migration's BEGIN IMMEDIATE holds the one write lock already

    def one_bank_writer(self, conn: sa.Connection) -> None:
        pass  # BEGIN IMMEDIATE lets one writer in at a time already

    def rows_of(self, table: sa.Table, columns: Mapping[str, Sequence]) -> dict[str, sa.ColumnElement]:
        # The rows as one JSON array, read by json_each: an executemany builds a dict per row and holds the write
        # lock, which scan records wait for, about four times as long (README "Known images").
        rows = sa.func.json_each(sa.bindparam("rows", json.dumps(list(zip(*columns.values())), ensure_ascii=False)))
        value = rows.table_valued("value").c.value
        return {c: sa.func.json_extract(value, f"$[{i}]") for i, c in enumerate(columns)}

    def fold_log(self, engine: sa.Engine) -> None:
        # The last connection to close folds the write-ahead log back into the database file, so a stopped stack
        # leaves one file to copy or back up. Two workers closing at the same moment can each still see the other
        # and both leave it; the last process (gunicorn's master) reads once so that its close is the one that folds.
        with contextlib.suppress(sa.exc.SQLAlchemyError), engine.connect().execution_options(reading=True) as conn:
            conn.execute(sa.select(scans.c.id).limit(1))


class PostgreSQL(Dialect):
    chunk_gap_s = 0  # scan records never wait for bank writes: they take no lock on bank_entries

    def engine(self, url: str) -> sa.Engine:
        return sa.create_engine(url, pool_pre_ping=True, connect_args={
            "connect_timeout": LOCK_TIMEOUT_S,
            "options": f"-c lock_timeout={LOCK_TIMEOUT_S * 1000} -c statement_timeout={LOCK_TIMEOUT_S * 5000}"})

    def writer_lock(self) -> AbstractContextManager:
        return contextlib.nullcontext()  # writers do not exclude each other; rows and tables lock what they must

    def lock_migrations(self, conn: sa.Connection) -> None:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")

    def one_bank_writer(self, conn: sa.Connection) -> None:
        # PostgreSQL hands out ids before commit, so two writers could commit out of order and an index would skip
        # the earlier id for good. EXCLUSIVE mode does not block readers.
        for limit in ("lock_timeout", "statement_timeout"):  # a review waits out an import; an import is one statement
            conn.execute(sa.text(f"SET LOCAL {limit} = '{BANK_WRITE_WAIT_S}s'"))
        conn.execute(sa.text("LOCK TABLE bank_entries IN EXCLUSIVE MODE"))

    def rows_of(self, table: sa.Table, columns: Mapping[str, Sequence]) -> dict[str, sa.ColumnElement]:
        # Each column one array for unnest: a VALUES list would have psycopg parse a placeholder per value
        # (README "Known images"). Text arrays, not varchar(n): the cast to varchar(n)[] would cut an overlong
        # value short without a word, where the column refuses it (callers check lengths; this keeps a missed
        # check from storing a wrong row).
        arrays = sa.func.unnest(*[sa.bindparam(c, list(v), type_=postgresql.ARRAY(
            sa.Text if isinstance(table.c[c].type, sa.String) else table.c[c].type))
            for c, v in columns.items()]).table_valued(*columns).render_derived()
        return dict(zip(columns, arrays.c))

    def fold_log(self, engine: sa.Engine) -> None:
        pass  # the server keeps its own log


DIALECTS: dict[str, Dialect] = {"sqlite": SQLite(), "postgresql": PostgreSQL()}


def dialect_for(url: str | sa.URL) -> Dialect:
    """The Dialect of the database `url` names (sqlite:///..., postgresql+psycopg://...); ValueError for others."""
    name = sa.engine.make_url(url).get_backend_name()
    if name not in DIALECTS:
        raise ValueError(f"the database must be SQLite or PostgreSQL, not {name} (FAKELENS_DATABASE_URL)")
    return DIALECTS[name]
