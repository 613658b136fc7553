"""What the predict endpoints do with the database: match uploads against the banks of reviewed
images, and store a scan record for every result. Neither may cost a prediction its answer: with
the database down or locked, matching uses the index as it last was and the result says
`"recorded": false` (both counted in fakelens_record_failures_total). The index follows the
database on a thread of its own (`follow`)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import weakref

import sqlalchemy as sa
from flask import current_app, g

from gateway.known import SYNC_S, Index
from gateway.metrics import MATCHES, RECORD_FAILURES, RECORD_SECONDS, SCANS_RECORDED
from gateway.storage import BankStore, StoreError, now
from gateway.verdict import Rule


def matches(hashes: list[dict | None]) -> list[dict | None]:
    """The bank entry each upload matches, or None."""
    index = current_app.extensions.get("index")
    if index is None:
        return [None] * len(hashes)
    out = [index.match(**h) if h else None for h in hashes]
    for m in out:
        if m:
            MATCHES.labels(m["bank"]).inc()
    return out


class Follower(threading.Thread):
    """Keeps a worker's index up with the database from a daemon thread, whatever the traffic: new entries
    every SYNC_S seconds, so a review in one worker is matched by every worker within a second, and a large
    import SYNC_ROWS at a time, with no request waiting for it. The thread ends with the index (a test's
    app) or at stop(); with the database away it keeps the index as it was, and counts the failure."""

    def __init__(self, index: Index, banks: BankStore):
        super().__init__(name="bank-follower", daemon=True)
        self._index, self._banks = weakref.ref(index), banks
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.is_set() and (followed := self._index()) is not None:
            try:
                caught_up = followed.sync(self._banks)
            except (sa.exc.SQLAlchemyError, StoreError):
                RECORD_FAILURES.labels("sync").inc()
                caught_up = True
            del followed
            if caught_up:
                self._stopped.wait(SYNC_S)

    def stop(self, wait_s: float = 5) -> None:
        """Stop, and wait for a sync under way to end (at most `wait_s`: a database that hangs must not hold up a
        worker's exit): a worker that exits closes its database connections after this, and a sync that opened
        one later would keep SQLite's write-ahead log beside the database."""
        self._stopped.set()
        self.join(wait_s)


def follow(index: Index, banks: BankStore) -> Follower:
    """Start following the database for `index` (Follower)."""
    follower = Follower(index, banks)
    follower.start()
    return follower


def summary(provenance: dict) -> dict:
    return {"ai_generated": provenance["ai_generated"],
            "sources": [{k: e.get(k) for k in ("source", "generator", "ai_generated")} for e in provenance["evidence"]]}


def record(raws: list[bytes], formats: list[str], hashes: list[dict], results: list[dict], rule: Rule) -> None:
    """Store one scan per result and add "scan_id" and "recorded" to each."""
    storage, cfg = current_app.extensions.get("storage"), current_app.config
    if storage is None:
        for r in results:
            r.update(scan_id=None, recorded=False)
        return
    keep = cfg["KEEP_IMAGES"]
    expires = now() + dt.timedelta(days=cfg["IMAGE_RETENTION_DAYS"]) if keep else None
    used = dataclasses.asdict(rule)
    rows = [{**h, "width": r["thumbnail"]["width"], "height": r["thumbnail"]["height"], "format": fmt,
             "verdict": r["verdict"], "decided_by": r["decided_by"], "prob_fake": r["prob_fake"],
             "models": {m: {"prob_fake": a["prob_fake"], "version": a["version"]} for m, a in r["models"].items()},
             "rule": used, "provenance": summary(r["provenance"]),
             "api_key_id": g.key.id if g.get("key") else None,
             "image": raw if keep else None, "image_expires_at": expires}
            for raw, fmt, h, r in zip(raws, formats, hashes, results)]
    try:
        with RECORD_SECONDS.time():  # failures too: a lock timeout shows here
            ids = storage.scans.record(rows)
    except StoreError as exc:
        current_app.logger.warning("scan records not stored: %s", exc)
        RECORD_FAILURES.labels("record").inc(len(rows))
        for r in results:
            r.update(scan_id=None, recorded=False)
        return
    SCANS_RECORDED.inc(len(ids))
    for r, scan_id in zip(results, ids):
        r.update(scan_id=scan_id, recorded=True)
    # TODO(main): retention thread (storage.scans.drop_expired_images, no longer called per request)
