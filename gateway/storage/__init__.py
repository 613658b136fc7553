"""Scan records, reviews, and banks of reviewed images: the gateway's database, behind small interfaces
(protocols) with one SQLAlchemy implementation (sql) for SQLite and PostgreSQL, whose differences live in
dialects; the tables in schema. Every wait is short (LOCK_TIMEOUT_S): a database that is down or locked must
cost a prediction its record, never its answer."""
from gateway.storage.dialects import BANK_WRITE_WAIT_S, LOCK_TIMEOUT_S
from gateway.storage.protocols import BankStore, NotFound, ReviewStore, ScanStore, StoreError
from gateway.storage.schema import LABELS, REVIEWED_BANK, SCAN_ID, metadata, now
from gateway.storage.sql import IMPORT_CHUNK, RETRY_S, Storage

__all__ = ["BANK_WRITE_WAIT_S", "IMPORT_CHUNK", "LABELS", "LOCK_TIMEOUT_S", "REVIEWED_BANK", "RETRY_S", "SCAN_ID",
           "BankStore", "NotFound", "ReviewStore", "ScanStore", "Storage", "StoreError", "metadata", "now"]
