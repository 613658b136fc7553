"""Bank entries are looked up by bank and hash, and by the entry a later one replaces: an import skips the rows a
bank already holds in force (Store.add_entries), one index probe each.

Revision ID: 0003
"""
from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_index("ix_bank_entries_bank_pdq", "bank_entries", ["bank", "pdq"])
    op.create_index("ix_bank_entries_replaces", "bank_entries", ["replaces"])


def downgrade() -> None:
    op.drop_index("ix_bank_entries_replaces", "bank_entries")
    op.drop_index("ix_bank_entries_bank_pdq", "bank_entries")
