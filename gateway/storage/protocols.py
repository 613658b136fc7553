"""What the gateway asks of its database, one small interface per concern: scan records, reviews, banks of
reviewed images. gateway.storage.sql implements all three over SQLAlchemy (SQLite or PostgreSQL)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol


class StoreError(RuntimeError):
    """The database could not be reached or written in time."""


class NotFound(KeyError):
    """No scan by that id."""


class ScanStore(Protocol):
    """A record of every image judged, and its bytes while they are kept."""

    def record(self, rows: list[dict]) -> list[str]:
        """Store one scan record per row (one transaction); their ids. Raises StoreError."""
        ...

    def scan(self, scan_id: str) -> dict:
        """The record with its current review; NotFound."""
        ...

    def image(self, scan_id: str) -> bytes | None:
        """The kept bytes of the scan's image; None when not kept, past their time, or no such scan."""
        ...

    def queue(self, verdict: str | None, reviewed: bool | None, limit: int, before: str | None) -> list[dict]:
        """Scans newest first (before: a created_at,id cursor from the previous page); ValueError for a bad cursor."""
        ...

    def drop_expired_images(self) -> int:
        """Retention: forget the bytes of kept images past their time (records stay); how many."""
        ...

    def backlog(self) -> int:
        """UNSURE scans nobody has reviewed."""
        ...


class ReviewStore(Protocol):
    """People's labels for scans."""

    def review(self, scan_id: str, label: str, note: str, reviewer: str) -> tuple[dict, dict]:
        """Record a review (replacing the scan's previous one, kept in history) and put the scan's hashes into
        the bank `reviewed`: (the review, the bank entry). NotFound; StoreError."""
        ...


class BankStore(Protocol):
    """Banks of known images' hashes with their labels, which uploads are matched against (gateway.known)."""

    def add_entry(self, bank: str, row: dict, reviewer: str) -> dict:
        """A known image without a scan (an upload): a row of sha256, pdq, pdq_quality, label, note. The entry."""
        ...

    def add_entries(self, bank: str, columns: Mapping[str, Sequence], reviewer: str | None) -> int:
        """A shared list (a CSV of hashes) as columns of equal length (pdq, pdq_quality, label, note), not a dict
        per row, which for a large list would cost a worker far more memory. How many went in: a hash the bank
        holds in force with the same label, or one the list repeats, is added once (the first row's note).
        StoreError says how many went in before a failure; the same list sent again finishes the import."""
        ...

    def entries_after(self, last_id: int, limit: int | None = None) -> dict[str, Sequence]:
        """Entries newer than `last_id`, oldest first (at most `limit`): what an index has not seen yet, as columns
        (entry, bank, sha256, pdq, pdq_quality, label, note, scan_id, reviewer, created_at, replaces)."""
        ...

    def bank(self, bank: str, after: int = 0, limit: int | None = None) -> list[dict]:
        """The bank's entries in force (none replaced by a later one), oldest first: those after entry `after`,
        at most `limit` (a page of a large bank)."""
        ...
