"""Reviews by people, and banks of reviewed images' hashes; scans learn whether they were reviewed,
and kept images expire by an index.

Revision ID: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("scans") as batch:
        batch.add_column(sa.Column("reviewed", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_index("ix_scans_image_expires_at", "scans", ["image_expires_at"])  # retention sweeps
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("scan_id", sa.String(32), sa.ForeignKey("scans.id"), nullable=False),
        sa.Column("label", sa.String(8), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("reviewer", sa.String(16), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("current", sa.Boolean, nullable=False),
    )
    op.create_index("ix_reviews_scan_id", "reviews", ["scan_id"])
    op.create_table(
        "bank_entries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("bank", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64)),
        sa.Column("pdq", sa.String(64)),
        sa.Column("pdq_quality", sa.Integer),
        sa.Column("label", sa.String(8), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("scan_id", sa.String(32)),
        sa.Column("reviewer", sa.String(16)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replaces", sa.Integer),
    )
    op.create_index("ix_bank_entries_bank", "bank_entries", ["bank"])
    op.create_index("ix_bank_entries_sha256", "bank_entries", ["sha256"])


def downgrade() -> None:
    op.drop_table("bank_entries")
    op.drop_table("reviews")
    op.drop_index("ix_scans_image_expires_at", "scans")
    with op.batch_alter_table("scans") as batch:
        batch.drop_column("reviewed")
