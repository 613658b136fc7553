"""Scan records, reviews, and banks of reviewed images: the gateway's one door to its database.

SQLite by default (a file under .data/, which `make clean` keeps), PostgreSQL in compose and
Kubernetes (FAKELENS_DATABASE_URL). SQL stays in SQLAlchemy Core here; the schema lives in
Alembic migrations (gateway/migrations), run at start and idempotent.

SQLite under gunicorn (processes x threads): WAL, synchronous=NORMAL, and every write transaction
opened with BEGIN IMMEDIATE, so a read that turns into a write never meets "database is locked"
(the busy timeout does not cover that upgrade); reads open a plain BEGIN and, under WAL, never wait
for the writer. Every wait is short (LOCK_TIMEOUT_S): a database that is down or locked must cost a
prediction its record, never its answer.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import postgresql

LOCK_TIMEOUT_S = 2
RETENTION_SWEEP_S = 60  # kept images past their time are dropped at most this often, per process
BANK_WRITE_WAIT_S = 30  # PostgreSQL: how long a bank write may wait and run (an import of 250,000 rows: seconds)
RETRY_S = 2  # after a failure, calls fail at once for this long instead of each waiting out a timeout
IMPORT_CHUNK = 20_000  # bank rows a transaction (about 0.1-0.2 s of the write lock here)
# Between two chunks the lock is left free this long: a scan record waiting in another process sleeps in
# SQLite's busy handler, which polls every 100 ms once it has waited a while.
IMPORT_GAP_S = 0.1
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
LABELS = ("REAL", "FAKE")
REVIEWED_BANK = "reviewed"  # where a review puts the image's hashes
SCAN_ID = re.compile(r"[0-9a-f]{32}")  # as record() makes them; anything else is not looked up
_MIGRATING = threading.Lock()  # Alembic keeps its context in module globals: one migration at a time per process

metadata = sa.MetaData()
scans = sa.Table(
    "scans", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("sha256", sa.String(64), nullable=False, index=True),
    sa.Column("pdq", sa.String(64)),
    sa.Column("pdq_quality", sa.Integer),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("format", sa.String(16)),
    sa.Column("verdict", sa.String(8), nullable=False, index=True),
    sa.Column("decided_by", sa.String(16)),
    sa.Column("prob_fake", sa.Float),
    sa.Column("models", sa.JSON, nullable=False),  # {model: {"prob_fake", "version"}}
    sa.Column("rule", sa.JSON),  # the verdict rule that decided
    sa.Column("provenance", sa.JSON, nullable=False),  # {"ai_generated", "sources"}
    sa.Column("api_key_id", sa.String(16)),  # which key asked (its id, never the key)
    sa.Column("image", sa.LargeBinary),  # only with FAKELENS_KEEP_IMAGES
    sa.Column("image_expires_at", sa.DateTime(timezone=True), index=True),
    sa.Column("reviewed", sa.Boolean, nullable=False, server_default=sa.false()),  # the review queue's filter
)
reviews = sa.Table(
    "reviews", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("scan_id", sa.String(32), sa.ForeignKey("scans.id"), nullable=False, index=True),
    sa.Column("label", sa.String(8), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("reviewer", sa.String(16), nullable=False),
    sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("current", sa.Boolean, nullable=False),  # a later review of the same scan replaces it; history stays
)
entries = sa.Table(
    "bank_entries", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("bank", sa.String(64), nullable=False, index=True),
    sa.Column("sha256", sa.String(64), index=True),
    sa.Column("pdq", sa.String(64)),
    sa.Column("pdq_quality", sa.Integer),
    sa.Column("label", sa.String(8), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("scan_id", sa.String(32)),
    sa.Column("reviewer", sa.String(16)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("replaces", sa.Integer, index=True),  # the entry this one supersedes (a second review of the same scan)
    sa.Index("ix_bank_entries_bank_pdq", "bank", "pdq"),  # an import's check for rows the bank holds already
)


def _bulk_insert(dialect: str, columns: Mapping[str, Sequence], bank: str, **same: object) -> sa.Insert:
    """The INSERT of bank entries given as columns of equal length, into `bank`, sharing `same` (reviewer,
    created_at): one statement that the database unnests, not a statement per row, built before the transaction
    takes its lock. PostgreSQL: each column one array (a VALUES list would have psycopg parse a placeholder per
    value, about 10 us each: 20 s for 200,000 rows). SQLite: the rows as one JSON array, read by json_each; the
    executemany it replaced built a dict per row and held the one write lock, which scan records wait for,
    four times as long (1.3 s against 0.3 s for 200,000 rows).

    A row whose hash the bank already holds in force with the same label is left out: a list imported twice, or
    shared back and forth between two teams, would otherwise double its entries at every pass."""
    names = list(columns)
    if dialect == "postgresql":
        # Text arrays, not varchar(n): the cast to varchar(n)[] would cut an overlong value short without a word,
        # where the column refuses it (callers check lengths; this keeps a missed check from storing a wrong row).
        arrays = sa.func.unnest(*[sa.bindparam(c, list(v), type_=postgresql.ARRAY(
            sa.Text if isinstance(entries.c[c].type, sa.String) else entries.c[c].type))
            for c, v in columns.items()]).table_valued(*names).render_derived()
        values = dict(zip(names, arrays.c))
    else:
        rows = sa.func.json_each(sa.bindparam("rows", json.dumps(list(zip(*columns.values())), ensure_ascii=False)))
        value = rows.table_valued("value").c.value
        values = {c: sa.func.json_extract(value, f"$[{i}]") for i, c in enumerate(names)}
    held, later = entries.alias("held"), entries.alias("later")
    in_force = sa.exists().where(held.c.bank == bank, held.c.pdq == values["pdq"], held.c.label == values["label"],
                                 ~sa.exists().where(later.c.replaces == held.c.id))
    fixed = {"bank": bank, **same}
    return entries.insert().from_select(
        [*names, *fixed], sa.select(*[v.label(c) for c, v in values.items()],
                                    *[sa.literal(v, entries.c[c].type).label(c) for c, v in fixed.items()])
        .where(~in_force))


def _insert_entry(conn: sa.Connection, **values: object) -> dict:
    return entry_dict(conn.execute(entries.insert().values(**values).returning(*entries.c)).one())


class StoreError(RuntimeError):
    """The database could not be reached or written in time."""


class NotFound(KeyError):
    pass


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(t: dt.datetime | None) -> str | None:
    if t is None:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).isoformat(timespec="seconds")


def make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
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
            # A write takes the lock up front; a read (Store._reading) takes none: WAL lets it read alongside
            # the writer, where BEGIN IMMEDIATE would queue it behind a large import for the busy timeout.
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("reading") else "BEGIN IMMEDIATE")
        return engine
    return sa.create_engine(url, pool_pre_ping=True, connect_args={
        "connect_timeout": LOCK_TIMEOUT_S,
        "options": f"-c lock_timeout={LOCK_TIMEOUT_S * 1000} -c statement_timeout={LOCK_TIMEOUT_S * 5000}"})


def alembic_config(engine: sa.Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


# A record as the API shows it: every column but the image bytes, and whether they are kept.
RECORD = [c for c in scans.c if c.name != "image"] + [scans.c.image.is_not(None).label("has_image")]


def _scan_row(r: sa.Row, review: sa.Row | None) -> dict:
    return {"scan_id": r.id, "created_at": _iso(r.created_at), "sha256": r.sha256, "pdq": r.pdq,
            "pdq_quality": r.pdq_quality, "width": r.width, "height": r.height, "format": r.format,
            "verdict": r.verdict, "decided_by": r.decided_by, "prob_fake": r.prob_fake, "models": r.models,
            "rule": r.rule, "provenance": r.provenance, "api_key_id": r.api_key_id,
            "image_kept": r.has_image,
            "review": None if review is None else {"label": review.label, "note": review.note,
                                                   "reviewer": review.reviewer, "reviewed_at": _iso(review.reviewed_at)}}


def entry_dict(r: sa.Row) -> dict:
    return {"entry": r.id, "bank": r.bank, "sha256": r.sha256, "pdq": r.pdq, "pdq_quality": r.pdq_quality,
            "label": r.label, "note": r.note, "scan_id": r.scan_id, "reviewer": r.reviewer,
            "created_at": _iso(r.created_at), "replaces": r.replaces}


class Store:
    """One per gateway process; safe to share between request threads (SQLAlchemy's pool)."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self._migrated = False
        self._down_until = 0.0
        self._swept = 0.0  # when drop_expired_images last ran
        # SQLite: the threads of one process take turns for the write lock here, where a waiter wakes the moment
        # it is free, instead of in SQLite's busy handler, which polls with sleeps of up to 100 ms.
        self._writing = threading.Lock() if self.engine.dialect.name == "sqlite" else contextlib.nullcontext()

    def close(self, last: bool = False) -> None:
        """Close this process's connections. On SQLite, the last connection to close folds the write-ahead log back
        into the database file, so a stopped stack leaves one file to copy or back up. Two gunicorn workers
        closing at the same moment can each still see the other and both leave the log (1 stop of 4 of `make up`).
        `last`: no other process has the database open (gunicorn's master, once its workers are gone), so read it
        once first, and this close is the one that folds the log."""
        if last and self.engine.dialect.name == "sqlite":
            with contextlib.suppress(sa.exc.SQLAlchemyError), \
                    self.engine.connect().execution_options(reading=True) as conn:
                conn.execute(sa.select(scans.c.id).limit(1))
        self.engine.dispose()

    def _failed(self, exc: Exception) -> StoreError:
        # Only a database that is away or locked is given time; an error about one call's values (PostgreSQL
        # refusing a value, say) is not a reason to fail everyone else's calls.
        if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)):
            self._down_until = time.monotonic() + RETRY_S
        return StoreError(str(exc).splitlines()[0])

    def migrate(self) -> None:
        """Bring the schema to the newest migration (a no-op when it is there); StoreError if the database is away."""
        if self._migrated:
            return
        with _MIGRATING:
            if self._migrated:
                return
            try:
                command.upgrade(alembic_config(self.engine), "head")
            except sa.exc.SQLAlchemyError as exc:
                raise self._failed(exc) from None
            self._migrated = True

    def _ready(self) -> None:
        """Fail at once while the database was just found away; migrate a database that was down at start."""
        if time.monotonic() < self._down_until:
            raise StoreError("the database was unreachable a moment ago")
        self.migrate()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        self._ready()
        try:
            with self.engine.connect().execution_options(reading=True) as conn:
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise self._failed(exc) from None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        """A write transaction; SQLAlchemy's errors inside it become StoreError."""
        self._ready()
        with self._writing:
            # Again: a thread that queued here behind one which then found the database locked must not wait
            # out a lock timeout of its own after it (a prediction took 4.1 s for two in a row, bench.chaos).
            self._ready()
            try:
                with self.engine.begin() as conn:
                    yield conn
            except sa.exc.SQLAlchemyError as exc:
                raise self._failed(exc) from None

    def record(self, rows: list[dict]) -> list[str]:
        """Store one scan record per row (one transaction); their ids. Raises StoreError."""
        ids = [uuid.uuid4().hex for _ in rows]
        stamp = now()
        with self._tx() as conn:
            conn.execute(scans.insert(), [{**r, "id": i, "created_at": stamp} for i, r in zip(ids, rows)])
        return ids

    def drop_expired_images(self, at_most_every_s: float = 0) -> int:
        """Retention: forget the bytes of kept images past their time (records stay); how many.
        With `at_most_every_s`, a call within that long of the last one does nothing."""
        if time.monotonic() - self._swept < at_most_every_s:
            return 0
        self._swept = time.monotonic()
        with self._tx() as conn:
            return conn.execute(scans.update().where(scans.c.image_expires_at < now())
                                .values(image=None, image_expires_at=None)).rowcount

    @staticmethod
    def _one_bank_writer(conn: sa.Connection) -> None:
        """Bank entries must become visible in id order: an index takes those after the last id it saw
        (Index.sync). PostgreSQL hands out ids before commit, so two writers could commit out of order and
        an index would skip the earlier id for good; one writer at a time (readers are not blocked). SQLite's
        BEGIN IMMEDIATE already lets one writer in at a time."""
        if conn.dialect.name == "postgresql":
            for limit in ("lock_timeout", "statement_timeout"):  # a review waits out an import; an import is one statement
                conn.execute(sa.text(f"SET LOCAL {limit} = '{BANK_WRITE_WAIT_S}s'"))
            conn.execute(sa.text("LOCK TABLE bank_entries IN EXCLUSIVE MODE"))

    def _current_review(self, conn: sa.Connection, scan_id: str) -> sa.Row | None:
        return conn.execute(sa.select(reviews).where(reviews.c.scan_id == scan_id, reviews.c.current)).first()

    def scan(self, scan_id: str) -> dict:
        """The record with its current review; NotFound."""
        if not SCAN_ID.fullmatch(scan_id):
            raise NotFound(scan_id)
        with self._reading() as conn:
            row = conn.execute(sa.select(*RECORD).where(scans.c.id == scan_id)).first()
            if row is None:
                raise NotFound(scan_id)
            return _scan_row(row, self._current_review(conn, scan_id))

    def image(self, scan_id: str) -> bytes | None:
        if not SCAN_ID.fullmatch(scan_id):
            return None
        with self._reading() as conn:
            return conn.execute(sa.select(scans.c.image).where(scans.c.id == scan_id,
                                                               scans.c.image_expires_at >= now())).scalar()

    def queue(self, verdict: str | None, reviewed: bool | None, limit: int, before: str | None) -> list[dict]:
        """Scans newest first (before: a created_at,id cursor from the previous page)."""
        q = sa.select(*RECORD).order_by(scans.c.created_at.desc(), scans.c.id.desc()).limit(limit)
        if verdict:
            q = q.where(scans.c.verdict == verdict)
        if reviewed is not None:
            q = q.where(scans.c.reviewed == reviewed)
        if before:
            stamp, _, last = before.partition(",")
            t = dt.datetime.fromisoformat(stamp)
            if not SCAN_ID.fullmatch(last):
                raise ValueError(f"not a scan id: {last!r}")
            q = q.where(sa.or_(scans.c.created_at < t, sa.and_(scans.c.created_at == t, scans.c.id < last)))
        with self._reading() as conn:
            rows = conn.execute(q).all()
            return [_scan_row(r, self._current_review(conn, r.id)) for r in rows]

    def review(self, scan_id: str, label: str, note: str, reviewer: str) -> tuple[dict, dict]:
        """Record a review (replacing the scan's previous one, kept in history) and put the scan's hashes into
        the bank `reviewed`: (the review, the bank entry). NotFound; StoreError."""
        if not SCAN_ID.fullmatch(scan_id):
            raise NotFound(scan_id)
        stamp = now()
        with self._tx() as conn:
            scan = conn.execute(sa.select(scans.c.sha256, scans.c.pdq, scans.c.pdq_quality)
                                .where(scans.c.id == scan_id)).first()
            if scan is None:
                raise NotFound(scan_id)
            conn.execute(reviews.update().where(reviews.c.scan_id == scan_id).values(current=False))
            conn.execute(reviews.insert().values(scan_id=scan_id, label=label, note=note, reviewer=reviewer,
                                                 reviewed_at=stamp, current=True))
            conn.execute(scans.update().where(scans.c.id == scan_id).values(reviewed=True))
            self._one_bank_writer(conn)
            previous = conn.execute(sa.select(sa.func.max(entries.c.id)).where(
                entries.c.scan_id == scan_id, entries.c.bank == REVIEWED_BANK)).scalar()
            entry = _insert_entry(conn, bank=REVIEWED_BANK, sha256=scan.sha256, pdq=scan.pdq,
                                  pdq_quality=scan.pdq_quality, label=label, note=note, scan_id=scan_id,
                                  reviewer=reviewer, created_at=stamp, replaces=previous)
        return {"label": label, "note": note, "reviewer": reviewer, "reviewed_at": _iso(stamp)}, entry

    def add_entry(self, bank: str, row: dict, reviewer: str) -> dict:
        """A known image without a scan (an upload): a row of sha256, pdq, pdq_quality, label, note. The entry."""
        with self._tx() as conn:
            self._one_bank_writer(conn)
            return _insert_entry(conn, **row, bank=bank, reviewer=reviewer, created_at=now())

    def add_entries(self, bank: str, columns: Mapping[str, Sequence], reviewer: str | None) -> int:
        """A shared list (a CSV of hashes) as columns of equal length (pdq, pdq_quality, label, note): a list of a
        million rows as dicts would cost a worker hundreds of MB. How many went in: a hash the bank holds in force
        with the same label, or one the list repeats, is added once (the first row's note).

        It goes in IMPORT_CHUNK rows a transaction, so scan records get the write lock between them: in one
        transaction, 200,000 rows into a bank of a million held it for seconds, and a prediction waited 2.6 s for
        its record (LOCK_TIMEOUT_S is 2). If a chunk fails, StoreError says how many went in; the same list sent
        again finishes the import, since rows already held are not added twice."""
        first = {}
        for i, key in enumerate(zip(columns["pdq"], columns["label"])):
            first.setdefault(key, i)
        # In hash order, the index on (bank, pdq) takes the rows a page at a time; in a list's own order they land
        # all over it: 200,000 rows into a million took 2.4 s against 1.3.
        keep = [i for _, i in sorted(first.items())]
        columns = {c: [v[i] for i in keep] for c, v in columns.items()}
        stamp, added = now(), 0
        for start in range(0, len(keep), IMPORT_CHUNK):
            if start and self.engine.dialect.name == "sqlite":  # PostgreSQL: scan records never wait for bank writes
                time.sleep(IMPORT_GAP_S)
            insert = _bulk_insert(self.engine.dialect.name, {c: v[start:start + IMPORT_CHUNK] for c, v in columns.items()},
                                  bank, reviewer=reviewer, created_at=stamp)
            try:
                with self._tx() as conn:
                    self._one_bank_writer(conn)
                    # preserve_rowcount: psycopg's cursor is closed by the time an INSERT ... SELECT's count is read
                    added += conn.execute(insert, execution_options={"preserve_rowcount": True}).rowcount
            except StoreError as exc:
                raise StoreError(f"{exc} ({added:,} rows went in before it; send the same list again to finish: "
                                 "rows already held are not added twice)") from None
        return added

    def entries_after(self, last_id: int, limit: int | None = None) -> dict[str, Sequence]:
        """Bank entries newer than `last_id`, oldest first (at most `limit`): what an index has not seen yet, as
        columns named as entry_dict names them (a dict per row made a worker's start take seconds per million)."""
        with self._reading() as conn:
            result = conn.execute(sa.select(entries.c.id.label("entry"), *[c for c in entries.c if c.name != "id"])
                                  .where(entries.c.id > last_id).order_by(entries.c.id).limit(limit))
            names, rows = list(result.keys()), result.all()
        columns = dict(zip(names, zip(*rows))) if rows else {n: () for n in names}
        iso = {t: _iso(t) for t in set(columns["created_at"])}  # a shared list's rows share one time
        columns["created_at"] = [iso[t] for t in columns["created_at"]]
        return columns

    def bank(self, bank: str, after: int = 0, limit: int | None = None) -> list[dict]:
        """The bank's entries in force (none replaced by a later one), oldest first: those after entry `after`,
        at most `limit` (a page of a large bank)."""
        later = sa.select(entries.c.replaces).where(entries.c.replaces.is_not(None))
        with self._reading() as conn:
            return [entry_dict(r) for r in conn.execute(
                sa.select(entries).where(entries.c.bank == bank, entries.c.id > after, entries.c.id.not_in(later))
                .order_by(entries.c.id).limit(limit))]

    def backlog(self) -> int:
        """UNSURE scans nobody has reviewed."""
        with self._reading() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(scans).where(
                scans.c.verdict == "UNSURE", scans.c.reviewed == sa.false())).scalar()
