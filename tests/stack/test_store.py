"""The database behind scan records, reviews and banks (gateway/storage/), on SQLite and on a real PostgreSQL."""
from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway.storage import IMPORT_CHUNK, LOCK_TIMEOUT_S, RETRY_S, NotFound, Storage, StoreError, metadata, now
from gateway.storage.sql import alembic_config
from tests.conftest import new_database

ROW = {"sha256": "ab" * 32, "pdq": "cd" * 32, "pdq_quality": 90, "width": 640, "height": 480, "format": "JPEG",
       "verdict": "UNSURE", "decided_by": None, "prob_fake": 0.6, "models": {"m": {"prob_fake": 0.6, "version": "1"}},
       "rule": {"threshold": 0.5}, "provenance": {"ai_generated": None, "sources": []}, "api_key_id": "0123456789ab"}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fakelens.db'}"
    return new_database(request.getfixturevalue("postgres"), f"t{time.monotonic_ns()}")


def tables(storage: Storage) -> set[str]:
    return set(sa.inspect(storage.engine).get_table_names())


def test_migrations_from_empty_run_once_and_again_do_nothing(url):
    storage = Storage(url)
    storage.migrate()
    assert {"scans", "reviews", "bank_entries", "alembic_version"} <= tables(storage)
    Storage(url).migrate()  # a second process at start: nothing to do, nothing broken
    with storage.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0003"


def schema_differences(storage: Storage, models: sa.MetaData) -> list:
    """What Alembic's autogenerate would change to make the database match `models` (server defaults too)."""
    with storage.engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_server_default": True}), models)


def test_migrating_an_empty_database_gives_exactly_the_models_schema(url):
    """schema.py and the migrations write the schema twice: a column, index, type, nullability or default in one
    and not the other shows here. Proven to look: a column the migrations lack is reported."""
    storage = Storage(url)
    storage.migrate()
    assert schema_differences(storage, metadata) == []
    models = sa.MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(models)
    flagged = sa.Column("flagged", sa.Boolean)
    models.tables["scans"].append_column(flagged)
    assert schema_differences(storage, models) == [("add_column", None, "scans", flagged)]


def test_migration_from_the_previous_revision_keeps_the_records(url):
    storage = Storage(url)
    command.upgrade(alembic_config(storage.engine), "0001")
    assert tables(storage) == {"scans", "alembic_version"}
    with storage.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO scans (id, created_at, sha256, width, height, verdict, models, provenance) "
                             "VALUES (:id, CURRENT_TIMESTAMP, :s, 1, 1, 'UNSURE', '{}', '{}')"), {"id": "01" * 16, "s": "ab" * 32})
    storage.migrate()
    assert storage.scans.scan("01" * 16)["review"] is None and storage.scans.backlog() == 1
    assert [s["scan_id"] for s in storage.scans.queue("UNSURE", False, 10, None)] == ["01" * 16]


def test_migration_from_the_previous_revision_keeps_the_banks_and_knows_what_they_hold(url):
    storage = Storage(url)
    command.upgrade(alembic_config(storage.engine), "0002")
    with storage.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO bank_entries (bank, pdq, pdq_quality, label, note, created_at) "
                             "VALUES ('partner', :p, 100, 'FAKE', 'before 0003', CURRENT_TIMESTAMP)"), {"p": "e4" * 32})
    storage.migrate()
    indexes = {i["name"] for i in sa.inspect(storage.engine).get_indexes("bank_entries")}
    assert {"ix_bank_entries_bank_pdq", "ix_bank_entries_replaces"} <= indexes
    listed = {"pdq": ["e4" * 32, "f5" * 32], "pdq_quality": [100] * 2, "label": ["FAKE"] * 2, "note": ["", ""]}
    assert storage.banks.add_entries("partner", listed, None) == 1  # the entry from before the migration is held
    assert [e["note"] for e in storage.banks.bank("partner")] == ["before 0003", ""]


def test_records_reviews_history_and_banks(url):
    storage = Storage(url)
    [scan_id] = storage.scans.record([ROW])
    got = storage.scans.scan(scan_id)
    assert got["sha256"] == ROW["sha256"] and got["review"] is None and got["api_key_id"] == "0123456789ab"
    assert got["image_kept"] is False  # no bytes unless asked
    first, entry1 = storage.reviews.review(scan_id, "FAKE", "generator artefacts", "reviewer-1")
    second, entry2 = storage.reviews.review(scan_id, "REAL", "on second look: a photo", "reviewer-2")
    assert storage.scans.scan(scan_id)["review"]["label"] == "REAL" and entry2["replaces"] == entry1["entry"]
    assert [e["entry"] for e in storage.banks.bank("reviewed")] == [entry2["entry"]]  # the first is replaced...
    with storage.engine.connect() as conn:  # ...and kept in history
        assert conn.exec_driver_sql("SELECT count(*) FROM reviews").scalar() == 2
    assert storage.scans.queue("UNSURE", False, 10, None) == [] and storage.scans.backlog() == 0
    with pytest.raises(KeyError):
        storage.reviews.review("no-such-scan", "FAKE", "", "r")


def test_eight_reviewers_at_once_lose_nothing(url):
    scan_ids = Storage(url).scans.record([ROW] * 80)
    errors = []

    def reviewer(k: int) -> None:
        storage = Storage(url)  # its own engine and pool, as another gunicorn worker would have
        try:
            for scan_id in scan_ids[k::8]:
                storage.reviews.review(scan_id, "FAKE" if k % 2 else "REAL", f"reviewer {k}", f"r{k}")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reviewer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    storage = Storage(url)
    assert len(storage.banks.bank("reviewed")) == 80 and storage.scans.backlog() == 0
    assert all(storage.scans.scan(s)["review"]["note"] == f"reviewer {i % 8}" for i, s in enumerate(scan_ids))


def test_an_unreachable_database_fails_fast_with_store_error(postgres):
    storage = Storage(postgres.url.replace(f":{postgres.port}/", ":1/"))  # nothing listens on port 1
    start = time.monotonic()
    with pytest.raises(StoreError):
        storage.scans.record([ROW])
    with pytest.raises(StoreError):  # and the next call does not wait out another timeout
        storage.scans.record([ROW])
    assert time.monotonic() - start < 5


def test_a_malformed_scan_id_or_a_refused_value_is_not_the_database_being_away(url):
    storage = Storage(url)
    scan_id = storage.scans.record([ROW])[0]
    for bad in ("abc\x00def", "x" * 5000, scan_id.upper()):  # PostgreSQL refuses a NUL in any text
        with pytest.raises(NotFound):
            storage.scans.scan(bad)
        with pytest.raises(NotFound):
            storage.reviews.review(bad, "FAKE", "", "0123456789ab")
        assert storage.scans.image(bad) is None
    with pytest.raises(ValueError):
        storage.scans.queue(None, None, 10, f"{storage.scans.scan(scan_id)['created_at']},ab\x00")
    if url.startswith("postgresql"):  # a NUL, which the API refuses (SQLite would store it)
        with pytest.raises(StoreError):
            storage.banks.add_entries("shared", {"pdq": ["ab" * 32], "pdq_quality": [90], "label": ["FAKE"],
                                         "note": ["a\x00b"]}, None)
        with pytest.raises(StoreError):  # too long for its column: refused, not cut short to "REALLY F"
            storage.banks.add_entries("shared", {"pdq": ["cd" * 32], "pdq_quality": [90], "label": ["REALLY FAKE"],
                                         "note": [""]}, None)
        assert storage.banks.bank("shared") == []
    assert storage.scans.scan(scan_id)["scan_id"] == scan_id  # at once: none of it counted as the database away


def test_kept_images_are_dropped_after_their_retention(url):
    import datetime as dt

    storage = Storage(url)
    old, fresh = storage.scans.record([{**ROW, "image": b"old bytes", "image_expires_at": now() - dt.timedelta(seconds=1)},
                               {**ROW, "image": b"new bytes", "image_expires_at": now() + dt.timedelta(days=1)}])
    assert storage.scans.image(old) is None and storage.scans.image(fresh) == b"new bytes"  # past its time: not served
    assert storage.scans.drop_expired_images() == 1
    assert storage.scans.scan(old)["image_kept"] is False and storage.scans.scan(fresh)["image_kept"] is True


def test_a_shared_list_goes_in_with_a_few_statements(url):
    storage = Storage(url)
    storage.migrate()
    statements = []
    sa.event.listen(storage.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    n = 25_000
    shared = {"pdq": [f"{i:064x}" for i in range(n)], "pdq_quality": [100] * n,
              "label": ["FAKE" if i % 2 else "REAL" for i in range(n)], "note": [f"n{i}" for i in range(n)]}
    assert storage.banks.add_entries("shared", shared, "0123456789ab") == n
    chunks = -(-n // IMPORT_CHUNK)
    assert len(statements) <= 10 * chunks, f"{len(statements)} statements for {n} rows"  # was two per row
    assert sum(s.lstrip().upper().startswith("INSERT") for s in statements) == chunks  # SQLite: was one per 10,000
    assert sorted((e["pdq"], e["label"], e["note"], e["reviewer"]) for e in storage.banks.bank("shared")) == list(
        zip(shared["pdq"], shared["label"], shared["note"], ["0123456789ab"] * n))


def test_a_list_imported_again_or_shared_back_adds_only_what_the_bank_does_not_hold(url):
    storage = Storage(url)
    shared = {"pdq": ["a1" * 32, "b2" * 32, "a1" * 32], "pdq_quality": [100] * 3, "label": ["FAKE", "REAL", "FAKE"],
              "note": ["first", "", "the list repeats it"]}
    assert storage.banks.add_entries("partner", shared, None) == 2  # the repeated row goes in once, with the first note
    assert storage.banks.add_entries("partner", shared, None) == 0  # imported again: nothing new
    assert [(e["pdq"], e["note"]) for e in storage.banks.bank("partner")] == [("a1" * 32, "first"), ("b2" * 32, "")]
    flipped = {"pdq": ["b2" * 32, "c3" * 32], "pdq_quality": [100] * 2, "label": ["FAKE", "FAKE"], "note": ["", ""]}
    assert storage.banks.add_entries("partner", flipped, None) == 2  # another label for a held hash is news; so is a new hash
    assert storage.banks.add_entries("elsewhere", shared, None) == 2  # banks are separate
    # A review's entry that a later review replaced is not held any more: its hash and label can come back in a list.
    [scan_id] = storage.scans.record([ROW])
    storage.reviews.review(scan_id, "FAKE", "", "r1")
    storage.reviews.review(scan_id, "REAL", "", "r2")
    back = {"pdq": [ROW["pdq"]] * 2, "pdq_quality": [100] * 2, "label": ["FAKE", "REAL"], "note": ["", ""]}
    assert storage.banks.add_entries("reviewed", back, None) == 1
    assert sorted(e["label"] for e in storage.banks.bank("reviewed")) == ["FAKE", "REAL"]


def test_a_large_import_leaves_the_lock_between_chunks_and_a_failed_one_finishes_when_sent_again(tmp_path):
    """SQLite: another process takes the write lock right after the first chunk and holds it past the lock timeout.
    The import fails saying how much went in; sent again, it adds exactly the rest."""
    import sqlite3

    storage = Storage(f"sqlite:///{tmp_path / 'fakelens.db'}")
    storage.migrate()
    n = IMPORT_CHUNK * 5 // 2
    shared = {"pdq": [f"{i:064x}" for i in range(n)], "pdq_quality": [100] * n, "label": ["FAKE"] * n, "note": [""] * n}
    held = threading.Event()

    def take_the_lock_after_a_chunk():
        other = sqlite3.connect(str(tmp_path / "fakelens.db"), isolation_level=None)
        while other.execute("SELECT count(*) FROM bank_entries").fetchone()[0] < IMPORT_CHUNK:
            time.sleep(0.005)
        other.execute("BEGIN IMMEDIATE")  # in the gap the import leaves
        held.set()
        time.sleep(LOCK_TIMEOUT_S + 1)
        other.execute("ROLLBACK")
        other.close()

    locker = threading.Thread(target=take_the_lock_after_a_chunk)
    locker.start()
    with pytest.raises(StoreError, match=f"{IMPORT_CHUNK:,} rows went in before it; send the same list again"):
        storage.banks.add_entries("shared", shared, None)
    assert held.is_set()
    locker.join()
    time.sleep(RETRY_S + 0.1)
    assert storage.banks.add_entries("shared", shared, None) == n - IMPORT_CHUNK
    assert len(storage.banks.bank("shared")) == n


def test_an_index_takes_up_every_bank_entry_when_two_writers_overlap(url):
    """A review in one worker while another imports a list: the entry of the writer that began first is
    taken up too, though the other finished while it was under way (ids are handed out before commit).
    On PostgreSQL the first is held past the lock timeout: the review waits for an import, not fails."""
    from fakelens.known import Hashes, Index

    stores = first, second, reader = Storage(url), Storage(url), Storage(url)
    for storage in stores:
        storage.migrate()  # now, not while the first writer holds SQLite's write lock
    inserted, go_on = threading.Event(), threading.Event()

    def hold_the_transaction_open(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("INSERT INTO BANK_ENTRIES") and not inserted.is_set():
            inserted.set()
            go_on.wait(10)

    sa.event.listen(first.engine, "after_cursor_execute", hold_the_transaction_open)
    errors = []

    def write(storage: Storage, pdq: str) -> None:
        try:
            storage.banks.add_entries("shared", {"pdq": [pdq], "pdq_quality": [90], "label": ["FAKE"], "note": [""]}, None)
        except StoreError as exc:
            errors.append(exc)

    writers = [threading.Thread(target=write, args=(first, "5a" * 32))]
    writers[0].start()
    assert inserted.wait(10)
    writers.append(threading.Thread(target=write, args=(second, "a5" * 32)))
    writers[1].start()
    time.sleep(0.5)  # the second writer commits now, unless it waits for the first
    index = Index()
    index.sync(reader.banks)
    if url.startswith("postgresql"):
        time.sleep(LOCK_TIMEOUT_S)
    go_on.set()
    for t in writers:
        t.join()
    assert not errors, errors
    index.sync(reader.banks)
    assert index.match(Hashes("0" * 64, "5a" * 32, 90)) is not None and index.match(Hashes("0" * 64, "a5" * 32, 90)) is not None


def test_sqlite_reads_do_not_wait_for_the_writer(tmp_path):
    import sqlite3

    storage = Storage(f"sqlite:///{tmp_path / 'fakelens.db'}")
    [scan_id] = storage.scans.record([ROW])
    writer = sqlite3.connect(tmp_path / "fakelens.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a large import in another worker, say
    start = time.monotonic()
    assert storage.scans.scan(scan_id)["sha256"] == ROW["sha256"] and storage.scans.backlog() == 1
    assert not storage.banks.entries_after(0)["entry"]
    assert time.monotonic() - start < 1  # not the busy timeout
    writer.execute("ROLLBACK")


def test_sqlite_writers_queued_behind_a_lock_timeout_do_not_each_wait_out_their_own(tmp_path):
    """Another process holds the write lock: the first record waits out the lock timeout, and those that queued
    behind it in this process fail with it rather than waiting a timeout more each (4 s for the second)."""
    import sqlite3
    from concurrent.futures import ThreadPoolExecutor


    storage = Storage(f"sqlite:///{tmp_path / 'fakelens.db'}")
    storage.scans.record([ROW])
    lock = sqlite3.connect(tmp_path / "fakelens.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")

    def timed_record(delay: float) -> tuple[bool, float]:
        time.sleep(delay)
        start = time.monotonic()
        try:
            storage.scans.record([ROW])
            return True, time.monotonic() - start
        except StoreError:
            return False, time.monotonic() - start

    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(timed_record, (0, 0.2, 0.4)))
    lock.execute("ROLLBACK")
    assert not any(ok for ok, _ in answers)
    assert max(s for _, s in answers) < LOCK_TIMEOUT_S + 0.5, answers


def test_an_index_takes_up_a_large_import_a_chunk_at_a_time_and_all_of_it_at_start(url):
    from fakelens.known import SYNC_ROWS, Hashes, Index

    storage = Storage(url)
    n = 2 * SYNC_ROWS + 10
    storage.banks.add_entries("shared", {"pdq": [f"{i:064x}" for i in range(n)], "pdq_quality": [100] * n,
                                 "label": ["FAKE"] * n, "note": ["list"] * n}, None)
    index = Index()
    assert not index.sync(storage.banks) and len(index) == SYNC_ROWS  # one chunk a sync
    assert not index.sync(storage.banks) and len(index) == 2 * SYNC_ROWS
    assert index.sync(storage.banks) and len(index) == 2 * SYNC_ROWS + 10
    assert index.sync(storage.banks) and len(index) == 2 * SYNC_ROWS + 10  # caught up: nothing read twice
    at_start = Index()
    at_start.take_up(storage.banks)
    assert len(at_start) == 2 * SYNC_ROWS + 10 and at_start.match(Hashes("0" * 64, f"{7:064x}", 100)).note == "list"
