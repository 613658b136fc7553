"""A gateway worker's life without a server: its follower of the database, and what it leaves when it exits."""
from __future__ import annotations

import subprocess
import time

from fakelens.known import Hashes
from tests.conftest import ROOT


def test_a_workers_index_follows_the_database_without_requests_and_stops_with_its_app(tmp_path):
    import gc

    from gateway.app import create_app
    from gateway.follower import SYNC_S
    from gateway.storage import Storage

    url = f"sqlite:///{tmp_path / 'fakelens.db'}"
    Storage(url).banks.add_entries("shared", {"pdq": ["5a" * 32], "pdq_quality": [90], "label": ["FAKE"], "note": ["before"]}, None)
    app = create_app({"DATABASE_URL": url, "RESULTS_DIR": str(tmp_path)})
    index = app.extensions["index"]
    assert index.match(Hashes("0" * 64, "5a" * 32, 90)).note == "before"  # taken up at start
    Storage(url).banks.add_entries("shared", {"pdq": ["a5" * 32], "pdq_quality": [90], "label": ["REAL"], "note": ["after"]}, None)
    deadline = time.monotonic() + 5 * SYNC_S
    while index.match(Hashes("0" * 64, "a5" * 32, 90)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert index.match(Hashes("0" * 64, "a5" * 32, 90)).note == "after"  # no request asked for it
    [follower] = app.extensions["threads"]
    del app, index
    gc.collect()
    follower.join(timeout=4 * SYNC_S)
    assert not follower.is_alive()  # a test's app, gone: its thread does not poll the database for ever


SCAN = {"sha256": "0" * 64, "width": 1, "height": 1, "verdict": "UNSURE", "models": {}, "provenance": {}}  # a record


def test_a_worker_that_exits_leaves_the_database_one_file(tmp_path):
    """gunicorn's worker_exit: the follower stops before the connections close. Before, its next sync, in the
    worker's last moments, opened a connection again, and a stopped `make up` left fakelens.db-wal and -shm
    beside the database (3 stops of 4 here), so a copy of fakelens.db alone missed what the log held."""
    from types import SimpleNamespace

    from gateway import gunicorn_conf
    from gateway.app import create_app
    from gateway.follower import SYNC_S

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'fakelens.db'}", "RESULTS_DIR": str(tmp_path)})
    app.extensions["storage"].scans.record([SCAN])
    assert (tmp_path / "fakelens.db-wal").exists()  # WAL mode, with a connection open
    gunicorn_conf.worker_exit(None, SimpleNamespace(wsgi=app))  # as gunicorn calls it, in the exiting worker
    time.sleep(3 * SYNC_S)  # the follower's next syncs, had it not stopped
    assert sorted(p.name for p in tmp_path.glob("fakelens.db*")) == ["fakelens.db"]
    assert not any(t.is_alive() for t in app.extensions["threads"])


def test_gunicorns_master_folds_a_log_the_workers_left_into_the_database(tmp_path):
    """Two workers closing at the same moment can each still see the other, and neither folds SQLite's write-ahead
    log back (1 stop of 4 of `make up`). The master's on_exit, after every worker has gone, closes last."""
    import sys
    from types import SimpleNamespace

    from gateway import gunicorn_conf
    from gateway.app import create_app
    from gateway.storage import Storage

    url = f"sqlite:///{tmp_path / 'fakelens.db'}"
    app = create_app({"DATABASE_URL": url, "RESULTS_DIR": str(tmp_path)}, follow=False)  # as the master builds it
    # A worker that records a scan and ends without closing its connection: the log stays beside the database.
    scan_id = subprocess.run([sys.executable, "-c", f"""import os
from gateway.storage import Storage
print(Storage({url!r}).scans.record([{SCAN!r}])[0], flush=True)
os._exit(0)"""], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    assert (tmp_path / "fakelens.db-wal").stat().st_size > 0
    gunicorn_conf.on_exit(SimpleNamespace(app=SimpleNamespace(wsgi=lambda: app)))
    assert sorted(p.name for p in tmp_path.glob("fakelens.db*")) == ["fakelens.db"]
    assert Storage(url).scans.scan(scan_id)["verdict"] == "UNSURE"  # folded in, not lost


def test_a_review_is_matched_at_once_by_the_worker_that_stored_it(tmp_path):
    """No follower runs in this app (follow=False): only the reviewing request itself can bring the entry into the
    index, as it must, so that the reviewer's next upload of a copy is decided by the review (it once waited for the
    worker's next sync)."""
    from gateway.app import create_app

    (tmp_path / "keys").write_text("reviewer-key-1 reviewer\n")
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'fakelens.db'}", "RESULTS_DIR": str(tmp_path),
                      "API_KEYS_FILE": str(tmp_path / "keys")}, follow=False)
    storage, index = app.extensions["storage"], app.extensions["index"]
    [scan_id] = storage.scans.record([{**SCAN, "sha256": "e" * 64, "pdq": "5a" * 32, "pdq_quality": 90}])
    assert index.match(Hashes("e" * 64, "5a" * 32, 90)) is None and "threads" not in app.extensions
    r = app.test_client().post(f"/v1/scans/{scan_id}/review", json={"label": "FAKE", "note": "seen"},
                               headers={"Authorization": "Bearer reviewer-key-1"})
    assert r.status_code == 201, r.get_data(as_text=True)
    match = index.match(Hashes("f" * 64, "5b" + "5a" * 31, 90))
    assert (match.scan_id, match.label, match.note, match.distance) == (scan_id, "FAKE", "seen", 1)
