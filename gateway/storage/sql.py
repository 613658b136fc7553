"""The one implementation of gateway.storage's interfaces, in SQLAlchemy Core, for SQLite and PostgreSQL alike
(what differs is in gateway.storage.dialects). The schema is built by the Alembic migrations (gateway/migrations),
run at start and idempotent."""
from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from gateway.storage.dialects import Dialect, dialect_for
from gateway.storage.protocols import BankStore, NotFound, ReviewStore, ScanStore, StoreError
from gateway.storage.schema import REVIEWED_BANK, SCAN_ID, entries, now, reviews, scans

RETRY_S = 2  # after a failure, calls fail at once for this long instead of each waiting out a timeout
IMPORT_CHUNK = 20_000  # bank rows a transaction: scan records get the write lock between two (README "Known images")
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
_MIGRATING = threading.Lock()  # Alembic keeps its context in module globals: one migration at a time per process


def alembic_config(engine: sa.Engine) -> Config:
    """Alembic's configuration for migrating the database of `engine` (gateway/migrations/env.py)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


class Database:
    """One process's engine, and the transactions every store opens on it: none waits long, and after a failure
    none waits at all for RETRY_S. Safe to share between request threads (SQLAlchemy's pool)."""

    def __init__(self, url: str):
        self.url = url
        self.dialect: Dialect = dialect_for(url)
        self.engine = self.dialect.engine(url)
        self._migrated = False
        self._down_until = 0.0
        self._writing = self.dialect.writer_lock()

    def close(self, last: bool = False) -> None:
        """Close this process's connections. `last`: no other process has the database open (gunicorn's master,
        once its workers are gone), so this close may fold SQLite's write-ahead log into the database file."""
        if last:
            self.dialect.fold_log(self.engine)
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
    def reading(self) -> Iterator[sa.Connection]:
        """A read-only connection; SQLAlchemy's errors inside it become StoreError."""
        self._ready()
        try:
            with self.engine.connect().execution_options(reading=True) as conn:
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise self._failed(exc) from None

    @contextlib.contextmanager
    def writing(self) -> Iterator[sa.Connection]:
        """A write transaction; SQLAlchemy's errors inside it become StoreError."""
        self._ready()
        with self._writing:
            # Again: a thread that queued here behind one which then found the database locked must not wait
            # out a lock timeout of its own after it.
            self._ready()
            try:
                with self.engine.begin() as conn:
                    yield conn
            except sa.exc.SQLAlchemyError as exc:
                raise self._failed(exc) from None


def _iso(t: dt.datetime | None) -> str | None:
    if t is None:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).isoformat(timespec="seconds")


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


def _current_review(conn: sa.Connection, scan_id: str) -> sa.Row | None:
    return conn.execute(sa.select(reviews).where(reviews.c.scan_id == scan_id, reviews.c.current)).first()


def entry_dict(r: sa.Row) -> dict:
    """A bank entry as the API shows it."""
    return {"entry": r.id, "bank": r.bank, "sha256": r.sha256, "pdq": r.pdq, "pdq_quality": r.pdq_quality,
            "label": r.label, "note": r.note, "scan_id": r.scan_id, "reviewer": r.reviewer,
            "created_at": _iso(r.created_at), "replaces": r.replaces}


def _insert_entry(conn: sa.Connection, **values: object) -> dict:
    return entry_dict(conn.execute(entries.insert().values(**values).returning(*entries.c)).one())


def _bulk_insert(dialect: Dialect, columns: Mapping[str, Sequence], bank: str, **same: object) -> sa.Insert:
    """The INSERT of bank entries given as columns of equal length, into `bank`, sharing `same` (reviewer,
    created_at): one statement over rows the database unnests, built before the transaction takes its lock.

    A row whose hash the bank already holds in force with the same label is left out: a list imported twice, or
    shared back and forth between two teams, would otherwise double its entries at every pass."""
    values = dialect.rows_of(entries, columns)
    held, later = entries.alias("held"), entries.alias("later")
    in_force = sa.exists().where(held.c.bank == bank, held.c.pdq == values["pdq"], held.c.label == values["label"],
                                 ~sa.exists().where(later.c.replaces == held.c.id))
    fixed = {"bank": bank, **same}
    return entries.insert().from_select(
        [*values, *fixed], sa.select(*[v.label(c) for c, v in values.items()],
                                     *[sa.literal(v, entries.c[c].type).label(c) for c, v in fixed.items()])
        .where(~in_force))


class SqlScans(ScanStore):
    """Scan records in the table `scans`."""

    def __init__(self, db: Database):
        self.db = db

    def record(self, rows: list[dict]) -> list[str]:
        ids = [uuid.uuid4().hex for _ in rows]
        stamp = now()
        with self.db.writing() as conn:
            conn.execute(scans.insert(), [{**r, "id": i, "created_at": stamp} for i, r in zip(ids, rows)])
        return ids

    def scan(self, scan_id: str) -> dict:
        if not SCAN_ID.fullmatch(scan_id):
            raise NotFound(scan_id)
        with self.db.reading() as conn:
            row = conn.execute(sa.select(*RECORD).where(scans.c.id == scan_id)).first()
            if row is None:
                raise NotFound(scan_id)
            return _scan_row(row, _current_review(conn, scan_id))

    def image(self, scan_id: str) -> bytes | None:
        if not SCAN_ID.fullmatch(scan_id):
            return None
        with self.db.reading() as conn:
            return conn.execute(sa.select(scans.c.image).where(scans.c.id == scan_id,
                                                               scans.c.image_expires_at >= now())).scalar()

    def queue(self, verdict: str | None, reviewed: bool | None, limit: int, before: str | None) -> list[dict]:
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
        with self.db.reading() as conn:
            rows = conn.execute(q).all()
            return [_scan_row(r, _current_review(conn, r.id)) for r in rows]

    def drop_expired_images(self) -> int:
        with self.db.writing() as conn:
            return conn.execute(scans.update().where(scans.c.image_expires_at < now())
                                .values(image=None, image_expires_at=None)).rowcount

    def backlog(self) -> int:
        with self.db.reading() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(scans).where(
                scans.c.verdict == "UNSURE", scans.c.reviewed == sa.false())).scalar()


class SqlReviews(ReviewStore):
    """Reviews in the table `reviews`, each with its entry in the bank `reviewed`."""

    def __init__(self, db: Database):
        self.db = db

    def review(self, scan_id: str, label: str, note: str, reviewer: str) -> tuple[dict, dict]:
        if not SCAN_ID.fullmatch(scan_id):
            raise NotFound(scan_id)
        stamp = now()
        with self.db.writing() as conn:
            scan = conn.execute(sa.select(scans.c.sha256, scans.c.pdq, scans.c.pdq_quality)
                                .where(scans.c.id == scan_id)).first()
            if scan is None:
                raise NotFound(scan_id)
            conn.execute(reviews.update().where(reviews.c.scan_id == scan_id).values(current=False))
            conn.execute(reviews.insert().values(scan_id=scan_id, label=label, note=note, reviewer=reviewer,
                                                 reviewed_at=stamp, current=True))
            conn.execute(scans.update().where(scans.c.id == scan_id).values(reviewed=True))
            self.db.dialect.one_bank_writer(conn)
            previous = conn.execute(sa.select(sa.func.max(entries.c.id)).where(
                entries.c.scan_id == scan_id, entries.c.bank == REVIEWED_BANK)).scalar()
            entry = _insert_entry(conn, bank=REVIEWED_BANK, sha256=scan.sha256, pdq=scan.pdq,
                                  pdq_quality=scan.pdq_quality, label=label, note=note, scan_id=scan_id,
                                  reviewer=reviewer, created_at=stamp, replaces=previous)
        return {"label": label, "note": note, "reviewer": reviewer, "reviewed_at": _iso(stamp)}, entry


class SqlBanks(BankStore):
    """Bank entries in the table `bank_entries`; an entry that replaces another (`replaces`) retires it."""

    def __init__(self, db: Database):
        self.db = db

    def add_entry(self, bank: str, row: dict, reviewer: str) -> dict:
        with self.db.writing() as conn:
            self.db.dialect.one_bank_writer(conn)
            return _insert_entry(conn, **row, bank=bank, reviewer=reviewer, created_at=now())

    def add_entries(self, bank: str, columns: Mapping[str, Sequence], reviewer: str | None) -> int:
        # IMPORT_CHUNK rows a transaction, so scan records get the write lock between them: one transaction for
        # a large list held it past their lock timeout. Rows already held are not added twice, so a list sent
        # again after a failed chunk finishes the import.
        first = {}
        for i, key in enumerate(zip(columns["pdq"], columns["label"])):
            first.setdefault(key, i)
        # In hash order, the index on (bank, pdq) takes the rows a page at a time; in a list's own order they land
        # all over it, which is slower (README "Known images").
        keep = [i for _, i in sorted(first.items())]
        columns = {c: [v[i] for i in keep] for c, v in columns.items()}
        stamp, added = now(), 0
        for start in range(0, len(keep), IMPORT_CHUNK):
            if start:
                time.sleep(self.db.dialect.chunk_gap_s)
            insert = _bulk_insert(self.db.dialect, {c: v[start:start + IMPORT_CHUNK] for c, v in columns.items()},
                                  bank, reviewer=reviewer, created_at=stamp)
            try:
                with self.db.writing() as conn:
                    self.db.dialect.one_bank_writer(conn)
                    # preserve_rowcount: psycopg's cursor is closed by the time an INSERT ... SELECT's count is read
                    added += conn.execute(insert, execution_options={"preserve_rowcount": True}).rowcount
            except StoreError as exc:
                raise StoreError(f"{exc} ({added:,} rows went in before it; send the same list again to finish: "
                                 "rows already held are not added twice)") from None
        return added

    def entries_after(self, last_id: int, limit: int | None = None) -> dict[str, Sequence]:
        # Columns, not a dict per row: an index takes up millions of entries at a worker's start.
        with self.db.reading() as conn:
            result = conn.execute(sa.select(entries.c.id.label("entry"), *[c for c in entries.c if c.name != "id"])
                                  .where(entries.c.id > last_id).order_by(entries.c.id).limit(limit))
            names, rows = list(result.keys()), result.all()
        columns = dict(zip(names, zip(*rows))) if rows else {n: () for n in names}
        iso = {t: _iso(t) for t in set(columns["created_at"])}  # a shared list's rows share one time
        columns["created_at"] = [iso[t] for t in columns["created_at"]]
        return columns

    def bank(self, bank: str, after: int = 0, limit: int | None = None) -> list[dict]:
        later = sa.select(entries.c.replaces).where(entries.c.replaces.is_not(None))
        with self.db.reading() as conn:
            return [entry_dict(r) for r in conn.execute(
                sa.select(entries).where(entries.c.bank == bank, entries.c.id > after, entries.c.id.not_in(later))
                .order_by(entries.c.id).limit(limit))]


class Storage:
    """The gateway's one door to its database: `scans`, `reviews` and `banks`, over one engine per process.
    SQLite by default (a file under .data/), PostgreSQL in compose and Kubernetes (FAKELENS_DATABASE_URL)."""

    def __init__(self, url: str):
        self._db = Database(url)
        self.url, self.engine = url, self._db.engine
        self.scans: ScanStore = SqlScans(self._db)
        self.reviews: ReviewStore = SqlReviews(self._db)
        self.banks: BankStore = SqlBanks(self._db)

    def migrate(self) -> None:
        """Bring the schema to the newest migration (a no-op when it is there); StoreError if the database is away."""
        self._db.migrate()

    def close(self, last: bool = False) -> None:
        """Close this process's connections; `last` when no other process has the database open (Database.close)."""
        self._db.close(last)
