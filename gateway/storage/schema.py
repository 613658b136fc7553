"""The tables of scan records, reviews and banks, as the models see them. The Alembic migrations
(gateway/migrations) build the same schema; tests/stack/test_store.py checks that they agree."""
from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa

LABELS = ("REAL", "FAKE")
REVIEWED_BANK = "reviewed"  # where a review puts the image's hashes
SCAN_ID = re.compile(r"[0-9a-f]{32}")  # as scans.record() makes them; anything else is not looked up

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


def now() -> dt.datetime:
    """The time as every timestamp column holds it: timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)
