"""/v1 for reviewers: scan records, the review queue, reviews, and banks of reviewed images.

Every route here needs a reviewer key (gateway/auth.py): the records hold the images' hashes,
and the banks decide verdicts.
"""
from __future__ import annotations

import csv
import io
import re

from flask import Blueprint, Response, current_app, g, jsonify, request, stream_with_context

from fakelens.images import BadImage, open_rgb
from fakelens.known import hashes_of
from gateway.auth import require_key, require_reviewer
from gateway.errors import ApiError
from gateway.metrics import AGREEMENT, REVIEWS
from gateway.storage import LABELS, NotFound, Storage, StoreError

bp = Blueprint("review", __name__, url_prefix="/v1")
bp.before_request(require_key)
BANK_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
PDQ_HEX = re.compile(r"^[0-9a-f]{64}$")
CSV_FIELDS = ["pdq", "label", "note"]  # ThreatExchange's 64-hex PDQ hashes, with our label and note
EXPORT_PAGE = 5_000  # entries an export reads from the database at a time
MAX_PAGE = 200


@bp.before_request
def reviewers_only():
    require_reviewer()
    if current_app.extensions.get("storage") is None:
        raise ApiError(503, "records_off", "scan records are switched off on this service (FAKELENS_RECORDS=0)")


def _storage() -> Storage:
    return current_app.extensions["storage"]


def _matched_at_once() -> None:
    """This worker's index takes up the entry it just stored, so the next upload here is matched by it; the other
    workers' followers take it up within their next sync. A database that fails here is left to the follower."""
    storage = _storage()
    try:
        current_app.extensions["index"].sync(storage.banks)
    except StoreError as exc:
        current_app.logger.warning("bank entry left to the follower: %s", exc)


def _label(value) -> str:
    if value not in LABELS:
        raise ApiError(400, "bad_label", f"label must be one of {', '.join(LABELS)}, got {value!r}")
    return value


def _note(value) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ApiError(400, "bad_note", "note must be a string")
    limit = current_app.config["MAX_NOTE_CHARS"]
    if len(value) > limit:
        raise ApiError(413, "note_too_large", f"the note has {len(value):,} characters; the limit is {limit:,}")
    if "\x00" in value:  # PostgreSQL refuses it, and SQLite's JSON functions end the text there
        raise ApiError(400, "bad_note", "a note may not contain NUL characters (\\u0000)")
    return value


def _bank(name: str) -> str:
    if not BANK_NAME.match(name):
        raise ApiError(400, "bad_bank", "a bank name is 1-64 lowercase letters, digits, '_' or '-'")
    return name


@bp.get("/scans/<scan_id>")
def scan(scan_id: str):
    try:
        return jsonify(_storage().scans.scan(scan_id))
    except NotFound:
        raise ApiError(404, "unknown_scan", f"no scan {scan_id!r}") from None


@bp.get("/scans/<scan_id>/image")
def scan_image(scan_id: str):
    raw = _storage().scans.image(scan_id)
    if raw is None:
        raise ApiError(404, "no_image", f"no image kept for scan {scan_id!r} (FAKELENS_KEEP_IMAGES, or it expired)")
    return Response(raw, mimetype="application/octet-stream", headers={"Cache-Control": "private, max-age=3600"})


@bp.get("/scans")
def scans():
    """Newest first; ?verdict=UNSURE&reviewed=false is the review queue. Pages: ?before=<next> from the last page."""
    verdict = request.args.get("verdict")
    if verdict not in (None, "REAL", "FAKE", "UNSURE"):
        raise ApiError(400, "bad_verdict", "verdict must be REAL, FAKE or UNSURE")
    reviewed = {"true": True, "false": False, None: None}.get(request.args.get("reviewed"), "bad")
    if reviewed == "bad":
        raise ApiError(400, "bad_reviewed", "reviewed must be true or false")
    try:
        limit = min(max(int(request.args.get("limit", 50)), 1), MAX_PAGE)
    except ValueError:
        raise ApiError(400, "bad_limit", "limit must be a number") from None
    try:
        rows = _storage().scans.queue(verdict, reviewed, limit, request.args.get("before"))
    except ValueError:
        raise ApiError(400, "bad_cursor", "before must be the 'next' value of the previous page") from None
    following = f"{rows[-1]['created_at']},{rows[-1]['scan_id']}" if len(rows) == limit else None
    return jsonify({"scans": rows, "next": following})


@bp.post("/scans/<scan_id>/review")
def review(scan_id: str):
    key = g.key  # a reviewer's (reviewers_only)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", 'send JSON: {"label": "REAL" or "FAKE", "note": "..."}')
    label, note = _label(body.get("label")), _note(body.get("note"))
    try:
        record = _storage().scans.scan(scan_id)
        done, entry = _storage().reviews.review(scan_id, label, note, key.id)
    except NotFound:
        raise ApiError(404, "unknown_scan", f"no scan {scan_id!r}") from None
    _matched_at_once()
    REVIEWS.labels(label).inc()
    line = (record["rule"] or {}).get("threshold", 0.5)  # each model's reading as the verdict rule reads it
    readings = {m: ("FAKE" if a["prob_fake"] >= line else "REAL") for m, a in record["models"].items()}
    if record["prob_fake"] is not None:
        readings["ensemble"] = "FAKE" if record["prob_fake"] >= line else "REAL"
    for model, reading in readings.items():
        AGREEMENT.labels(model, str(reading == label).lower()).inc()
    return jsonify({"scan_id": scan_id, "review": done, "entry": entry}), 201


@bp.post("/banks/<bank>/entries")
def add_entry(bank: str):
    """A known image without a prior scan: multipart `image`, `label`, `note`."""
    key = g.key  # a reviewer's (reviewers_only)
    f = request.files.get("image")
    if f is None:
        raise ApiError(400, "missing_image", "no file in the form field 'image'")
    label, note = _label(request.form.get("label")), _note(request.form.get("note"))
    raw = f.read()
    try:
        rgb = open_rgb(raw, current_app.config["MAX_PIXELS"])
    except BadImage as exc:
        raise ApiError(413 if exc.reason == "too_many_pixels" else 400, exc.reason, str(exc)) from None
    h = hashes_of(raw, rgb)
    row = {"sha256": h.sha256, "pdq": h.pdq, "pdq_quality": h.pdq_quality, "label": label, "note": note}
    entry = _storage().banks.add_entry(_bank(bank), row, key.id)
    _matched_at_once()
    return jsonify(entry), 201


@bp.get("/banks/<bank>/export")
def export(bank: str):
    """The bank's entries in force as CSV: pdq (64 hex), label, note. Streamed a page at a time, so a bank of a
    million costs a worker one page of memory; a database that fails before the first page answers 503."""
    banks, name = _storage().banks, _bank(bank)
    first = banks.bank(name, limit=EXPORT_PAGE)

    def pages():
        yield ",".join(CSV_FIELDS) + "\n"
        page = first
        while page:
            yield _csv_rows(page)
            page = banks.bank(name, after=page[-1]["entry"], limit=EXPORT_PAGE) if len(page) == EXPORT_PAGE else []

    return Response(stream_with_context(pages()), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="fakelens-{bank}.csv"'})


def _csv_rows(entries: list[dict]) -> str:
    """The entries that have a PDQ hash, as CSV rows."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_FIELDS, lineterminator="\n")
    for e in entries:
        if e["pdq"]:
            writer.writerow({k: e[k] for k in CSV_FIELDS})
    return out.getvalue()


@bp.post("/banks/<bank>/import")
def import_(bank: str):
    """CSV with a header: pdq, label, note (as export writes it). Every row is checked before any goes in; rows the
    bank holds already are counted, not added again, so a list can be sent again after a failure to finish it."""
    key = g.key  # a reviewer's (reviewers_only)
    # Read as it arrives, into columns: the whole body as text and a dict per row cost a worker far more memory
    # (README, Known images). utf-8-sig: spreadsheets start with a BOM.
    body = io.TextIOWrapper(request.stream, encoding="utf-8-sig", errors="replace", newline="")
    pdqs, labels, notes = [], [], []
    for n, r in enumerate(csv.DictReader(body), start=2):
        pdq = (r.get("pdq") or "").strip().lower()
        if not PDQ_HEX.match(pdq):
            raise ApiError(400, "bad_csv", f"line {n}: pdq must be 64 hex digits (a PDQ hash)")
        if r.get("label") not in LABELS:
            raise ApiError(400, "bad_csv", f"line {n}: label must be REAL or FAKE")
        pdqs.append(pdq)
        labels.append(r["label"])
        notes.append(_note(r.get("note")))
    if not pdqs:
        raise ApiError(400, "bad_csv", "no rows: send CSV with the header pdq,label,note")
    # A shared list carries no quality: its hashes were vetted by whoever shared them.
    columns = {"pdq": pdqs, "pdq_quality": [100] * len(pdqs), "label": labels, "note": notes}
    imported = _storage().banks.add_entries(_bank(bank), columns, key.id)
    # Rows the bank held already (same hash and label), or that the list repeats, are not added twice.
    return jsonify({"bank": bank, "imported": imported, "already_held": len(pdqs) - imported}), 201
