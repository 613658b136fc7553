"""Scan records: one row per image judged.

Revision ID: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "scans",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("pdq", sa.String(64)),
        sa.Column("pdq_quality", sa.Integer),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("format", sa.String(16)),
        sa.Column("verdict", sa.String(8), nullable=False),
        sa.Column("decided_by", sa.String(16)),
        sa.Column("prob_fake", sa.Float),
        sa.Column("models", sa.JSON, nullable=False),
        sa.Column("rule", sa.JSON),
        sa.Column("provenance", sa.JSON, nullable=False),
        sa.Column("api_key_id", sa.String(16)),
        sa.Column("image", sa.LargeBinary),
        sa.Column("image_expires_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_scans_created_at", "scans", ["created_at"])
    op.create_index("ix_scans_sha256", "scans", ["sha256"])
    op.create_index("ix_scans_verdict", "scans", ["verdict"])


def downgrade() -> None:
    op.drop_table("scans")
