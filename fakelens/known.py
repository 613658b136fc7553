"""Known images: the hashes of an upload, and an in-memory index of the banks that matches them.

Hashes: SHA-256 of the bytes (an exact copy), and PDQ (Meta's perceptual hash, as used by
ThreatExchange and HMA) of the decoded pixels, which survives re-saving and resizing but not
cropping. Stored and uploaded images are hashed the same way (`pdq_of`): downscaled to at most
PDQ_SIDE px first, as PDQ's own PHP reference does, since its blur is most of the cost and grows
with the pixels (README, Known images, has the measurements).

Matching (`Index.match`): an exact SHA-256 first; then the nearest PDQ hash at a Hamming distance
of at most MAX_DISTANCE (PDQ's published threshold), where both hashes have a quality of at least
MIN_QUALITY (flat images hash to noise). A query is an exhaustive scan of the packed hashes by
faiss-cpu's IndexBinaryFlat (hardware popcount); past tens of millions, faiss's multi-index hashing
(IndexBinaryMultiHash) would answer sublinearly.

The index follows a bank store (`sync`: the entries added since the last one it saw, SYNC_ROWS at a
time, so no caller holds a large import in memory at once).
"""
from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import faiss
import numpy as np
import pdqhash
from PIL import Image

MAX_DISTANCE = 31
MIN_QUALITY = 50
PDQ_SIDE = 128
SYNC_ROWS = 5_000  # entries a sync reads at a time: a large bank never sits in memory as dicts
NO_HASH = "0" * 64  # the row of an entry that may not match by PDQ

# One thread per query: it already runs on one of a server's request threads, and an OpenMP team would spin
# on the cores the models need.
faiss.omp_set_num_threads(1)


class BankEntries(Protocol):
    """Where an index reads the banks' entries from (the gateway's bank store)."""

    def entries_after(self, last_id: int, limit: int | None = None) -> Mapping[str, Sequence]: ...


@dataclass(frozen=True)
class Hashes:
    """What an upload is matched by."""
    sha256: str  # of the bytes as uploaded
    pdq: str  # 64 hex digits, of the decoded pixels
    pdq_quality: int  # 0-100; under MIN_QUALITY the PDQ hash is not matched


@dataclass(frozen=True)
class Match:
    """The bank entry an upload matched."""
    bank: str
    entry: int
    scan_id: str | None  # the reviewed scan the entry came from, if any
    distance: int  # PDQ bits apart; 0 for the same bytes
    label: str  # REAL or FAKE
    note: str | None
    reviewed_at: str | None  # when the entry was made (ISO 8601)


def sha256(raw: bytes) -> str:
    """Hex SHA-256 of the uploaded bytes: an exact copy."""
    return hashlib.sha256(raw).hexdigest()


def hashes_of(raw: bytes, rgb: Image.Image) -> Hashes:
    """The hashes of an upload's bytes and of its decoded RGB pixels."""
    pdq, quality = pdq_of(rgb)
    return Hashes(sha256(raw), pdq, quality)


def pdq_of(rgb: Image.Image, max_side: int | None = PDQ_SIDE) -> tuple[str, int]:
    """(64-hex PDQ hash, quality 0-100) of decoded RGB pixels, the same way for stored and uploaded images.
    max_side=None hashes every pixel, as PDQ's reference command-line tools do."""
    if max_side and max(rgb.size) > max_side:
        rgb = rgb.copy()
        rgb.thumbnail((max_side, max_side), Image.BILINEAR)
    bits, quality = pdqhash.compute(np.asarray(rgb))
    return np.packbits(bits.astype(np.uint8)).tobytes().hex(), int(quality)


def distance(a: str, b: str) -> int:
    """Hamming distance between two 64-hex PDQ hashes: how many of their 256 bits differ."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


class Index:
    """The banks' entries in force, matchable by SHA-256 and PDQ; safe to share between request threads.

    Kept as columns, one row per entry in id order, since a dict per entry costs far more memory than a
    row (README, How it scales): the packed hashes in a faiss binary index (row i of the index is row i of
    every column), whether each row may match, and what a match reports, as positions in a table of the
    distinct strings (a shared list repeats its bank, label, note and import time on every row)."""

    FIELDS = ("bank", "label", "note", "scan_id", "created_at")  # what a match reports, besides entry and distance

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_id = 0
        self._hashes = faiss.IndexBinaryFlat(256)
        # Rows 0.._n of each column are entries; the rest is room to grow into (_append).
        self._n = 0
        self._columns = {
            "ids": np.zeros(0, dtype=np.int64),  # entry id of each row, ascending
            "in_force": np.zeros(0, dtype=bool),  # not replaced by a later entry
            "matchable": np.zeros(0, dtype=bool),  # in force, with a PDQ hash of quality >= MIN_QUALITY
            "fields": np.zeros((0, len(self.FIELDS)), dtype=np.int32),  # positions in _strings
        }
        self._matchable_bits = np.zeros(0, dtype=np.uint8)  # "matchable" packed, as faiss's row filter reads it
        self._strings: list[str | None] = [None]
        self._string_at: dict[str | None, int] = {None: 0}
        self._by_sha: dict[str, int] = {}  # sha256 -> entry id, entries in force
        self._sha_of: dict[int, str] = {}  # entry id -> sha256, for the few entries that carry one

    def _string(self, value: str | None) -> int:
        at = self._string_at.get(value)
        if at is None:
            at = self._string_at[value] = len(self._strings)
            self._strings.append(value)
        return at

    def _col(self, name: str) -> np.ndarray:
        return self._columns[name][:self._n]

    def _append(self, **rows: np.ndarray) -> None:
        """Rows at the end of every column. Room grows by a quarter when it runs out, so taking up a million entries
        5,000 at a time copies each row a few times, not 200 times."""
        n = len(rows["ids"])
        for name, new in rows.items():
            column = self._columns[name]
            if self._n + n > len(column):
                grown = np.zeros((max(self._n + n, len(column) * 5 // 4), *column.shape[1:]), dtype=column.dtype)
                grown[:self._n] = column[:self._n]
                self._columns[name] = column = grown
            column[self._n:self._n + n] = new
        self._n += n

    def _row(self, entry_id: int) -> int | None:
        ids = self._col("ids")
        row = int(np.searchsorted(ids, entry_id))
        return row if row < len(ids) and ids[row] == entry_id else None

    def add(self, new: Mapping[str, Sequence]) -> None:
        """Entries in id order, as columns (BankEntries.entries_after): entry, sha256, pdq, pdq_quality, replaces and
        FIELDS. One that replaces another retires it."""
        with self._lock:
            ids = np.asarray(new["entry"], dtype=np.int64)
            start = int(np.searchsorted(ids, self._last_id, side="right"))  # ids stay ascending, each row once
            if start == len(ids):
                return
            ids, new = ids[start:], {k: v[start:] for k, v in new.items()}
            ok = np.fromiter((bool(p) and (q or 0) >= MIN_QUALITY for p, q in zip(new["pdq"], new["pdq_quality"])),
                             dtype=bool, count=len(ids))
            packed = bytes.fromhex("".join(p if good else NO_HASH for p, good in zip(new["pdq"], ok)))
            fields = np.empty((len(ids), len(self.FIELDS)), dtype=np.int32)
            for j, f in enumerate(self.FIELDS):
                at = {v: self._string(v) for v in set(new[f])}
                fields[:, j] = np.fromiter(map(at.__getitem__, new[f]), dtype=np.int32, count=len(ids))
            self._hashes.add(np.frombuffer(packed, np.uint8).reshape(-1, 32))
            self._append(ids=ids, in_force=True, matchable=ok, fields=fields)
            self._last_id = int(ids[-1])
            in_force, matchable = self._col("in_force"), self._col("matchable")
            for entry, sha, replaces in zip(ids.tolist(), new["sha256"], new["replaces"]):
                old = self._row(replaces) if replaces else None
                if old is not None:
                    in_force[old] = matchable[old] = False
                    gone = self._sha_of.pop(replaces, None)
                    if gone and self._by_sha.get(gone) == replaces:
                        del self._by_sha[gone]
                if sha:
                    self._by_sha[sha] = entry
                    self._sha_of[entry] = sha
            if 2 * in_force.sum() <= self._n:  # half or more retired: every query would scan them
                retired = _bits(~in_force)  # named: faiss reads it through a bare pointer
                self._hashes.remove_ids(faiss.IDSelectorBitmap(self._n, faiss.swig_ptr(retired)))
                self._columns = {name: column[:self._n][in_force] for name, column in self._columns.items()}
                self._n = len(self._columns["ids"])
            self._matchable_bits = _bits(self._col("matchable"))

    def __len__(self) -> int:
        """Rows a query scans, retired ones included."""
        return self._n

    def sync(self, banks: BankEntries) -> bool:
        """Take up to SYNC_ROWS of the entries the store has and this index has not; True when caught up.
        Safe from several threads: add() skips the rows another sync took first."""
        new = banks.entries_after(self._last_id, SYNC_ROWS)
        self.add(new)
        return len(new["entry"]) < SYNC_ROWS

    def take_up(self, banks: BankEntries) -> None:
        """Every entry of the store, before a worker's first request."""
        while not self.sync(banks):
            pass

    def _found(self, row: int, distance: int) -> Match:
        bank, label, note, scan_id, created_at = (self._strings[i] for i in self._columns["fields"][row])
        return Match(bank, int(self._columns["ids"][row]), scan_id, distance, label, note, created_at)

    def match(self, hashes: Hashes) -> Match | None:
        """The entry that matches: the same bytes (distance 0), else the nearest PDQ hash within MAX_DISTANCE."""
        with self._lock:
            if hashes.sha256 in self._by_sha:
                return self._found(self._row(self._by_sha[hashes.sha256]), 0)
            if not hashes.pdq or hashes.pdq_quality < MIN_QUALITY or not self._matchable_bits.any():
                return None
            query = np.frombuffer(bytes.fromhex(hashes.pdq), np.uint8).reshape(1, 32)
            only = faiss.IDSelectorBitmap(self._n, faiss.swig_ptr(self._matchable_bits))
            dist, row = self._hashes.search(query, 1, params=faiss.SearchParameters(sel=only))
            if row[0, 0] < 0 or dist[0, 0] > MAX_DISTANCE:
                return None
            return self._found(int(row[0, 0]), int(dist[0, 0]))

    def hash_bytes(self) -> int:
        """Memory of the packed hashes, which faiss holds outside Python's allocator (tracemalloc does not see it)."""
        return self._hashes.ntotal * self._hashes.code_size


def _bits(rows: np.ndarray) -> np.ndarray:
    """A boolean per row packed as faiss's IDSelectorBitmap reads it: bit i of the array is row i."""
    return np.packbits(rows, bitorder="little")
