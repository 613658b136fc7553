"""Known images: the hashes of an upload, and an in-memory index of the banks that matches them.

Hashes: SHA-256 of the bytes (an exact copy), and PDQ (Meta's perceptual hash, as used by
ThreatExchange and HMA) of the decoded pixels, which survives re-saving and resizing but not
cropping. Stored and uploaded images are hashed the same way (`pdq_of`): downscaled to at most
PDQ_SIDE px first, as PDQ's own PHP reference does before hashing (its Jarosz blur is most of the
cost and grows with the pixels). On the dev set that is 5x faster than hashing 512 px, matches
resized copies more often, and matches a full-resolution hash from another tool about as often
(README, Known images).

Matching (`Index.match`): an exact SHA-256 first; then the nearest PDQ hash at a Hamming distance
of at most MAX_DISTANCE (PDQ's published threshold; README, Known images, has our measurements),
where both hashes have a quality of at least MIN_QUALITY (flat images hash to noise).

The index lives in each gateway worker and follows the database: a worker takes up every entry
before its first request (`take_up`), then a thread of its own (records.follow) reads the entries
added since the last one it saw every SYNC_S seconds, SYNC_ROWS at a time, so a review in one
worker is matched by every worker within a second, and no request waits for a large import. A query is
a scan over packed bits (numpy, a 16-bit popcount table): about 45 ms over a million hashes on
this 2-core machine (make pdq). Past a million, faiss-cpu's IndexBinaryFlat does the same scan
several times faster, and its multi-index hashing sublinearly.
"""
from __future__ import annotations

import hashlib
import threading

import numpy as np
import pdqhash
from PIL import Image

MAX_DISTANCE = 31
MIN_QUALITY = 50
PDQ_SIDE = 128
SYNC_S = 0.5
SYNC_ROWS = 5_000  # entries a sync reads at a time: about 60 ms here, and a large bank never sits in memory as dicts
POPCOUNT16 = np.array([bin(i).count("1") for i in range(1 << 16)], dtype=np.uint8)


def sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def pdq_of(rgb: Image.Image, max_side: int | None = PDQ_SIDE) -> tuple[str, int]:
    """(64-hex PDQ hash, quality 0-100) of decoded RGB pixels, the same way for stored and uploaded images.
    max_side=None hashes every pixel, as PDQ's reference command-line tools do."""
    if max_side and max(rgb.size) > max_side:
        rgb = rgb.copy()
        rgb.thumbnail((max_side, max_side), Image.BILINEAR)
    bits, quality = pdqhash.compute(np.asarray(rgb))
    return np.packbits(bits.astype(np.uint8)).tobytes().hex(), int(quality)


def distance(a: str, b: str) -> int:
    return int(POPCOUNT16[np.bitwise_xor(np.frombuffer(bytes.fromhex(a), np.uint16),
                                         np.frombuffer(bytes.fromhex(b), np.uint16))].sum())


class Index:
    """The banks' entries in force, matchable by SHA-256 and PDQ; safe to share between request threads.

    Kept as columns, one row per entry in id order, so a million shared hashes take about 60 MB per
    worker (make pdq), where a dict per entry took about 900 bytes each: the packed hash, whether
    it may match, and what a match reports, as positions in a table of the distinct strings (a
    shared list repeats its bank, label, note and import time on every row)."""

    FIELDS = ("bank", "label", "note", "scan_id", "created_at")  # what a match reports, besides entry and distance

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_id = 0
        self._ids = np.zeros(0, dtype=np.int64)  # entry id of each row, ascending
        self._hashes = np.zeros((0, 16), dtype=np.uint16)
        self._in_force = np.zeros(0, dtype=bool)  # not replaced by a later entry
        self._matchable = np.zeros(0, dtype=bool)  # in force, with a PDQ hash of quality >= MIN_QUALITY
        self._fields = np.zeros((0, len(self.FIELDS)), dtype=np.int32)  # positions in _strings
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

    def _row(self, entry_id: int) -> int | None:
        row = int(np.searchsorted(self._ids, entry_id))
        return row if row < len(self._ids) and self._ids[row] == entry_id else None

    def add(self, new: list[dict]) -> None:
        """Entries in id order; one that `replaces` another retires it."""
        with self._lock:
            new = [e for e in new if e["entry"] > self._last_id]  # ids stay ascending, each row once
            if not new:
                return
            ok = [bool(e.get("pdq")) and (e.get("pdq_quality") or 0) >= MIN_QUALITY for e in new]
            packed = b"".join(bytes.fromhex(e["pdq"]) if good else bytes(32) for e, good in zip(new, ok))
            self._ids = np.concatenate([self._ids, np.array([e["entry"] for e in new], dtype=np.int64)])
            self._hashes = np.concatenate([self._hashes, np.frombuffer(packed, np.uint16).reshape(-1, 16)])
            self._in_force = np.concatenate([self._in_force, np.ones(len(new), dtype=bool)])
            self._matchable = np.concatenate([self._matchable, np.array(ok, dtype=bool)])
            self._fields = np.concatenate([self._fields, np.array(
                [[self._string(e.get(f)) for f in self.FIELDS] for e in new], dtype=np.int32)])
            self._last_id = int(self._ids[-1])
            for e in new:
                old = self._row(e["replaces"]) if e.get("replaces") else None
                if old is not None:
                    self._in_force[old] = self._matchable[old] = False
                    sha = self._sha_of.pop(e["replaces"], None)
                    if sha and self._by_sha.get(sha) == e["replaces"]:
                        del self._by_sha[sha]
                if e.get("sha256"):
                    self._by_sha[e["sha256"]] = e["entry"]
                    self._sha_of[e["entry"]] = e["sha256"]
            if 2 * self._in_force.sum() <= len(self._ids):  # half or more retired: every query would scan them
                keep = self._in_force
                self._ids, self._hashes, self._fields = self._ids[keep], self._hashes[keep], self._fields[keep]
                self._in_force, self._matchable = self._in_force[keep], self._matchable[keep]

    def __len__(self) -> int:
        """Rows a query scans, retired ones included."""
        return len(self._ids)

    def sync(self, store) -> bool:
        """Take up to SYNC_ROWS of the entries the database has and this index has not; True when caught up.
        Called from one thread at a time (at a worker's start, then by its follower: records.follow)."""
        new = store.entries_after(self._last_id, SYNC_ROWS)
        self.add(new)
        return len(new) < SYNC_ROWS

    def take_up(self, store) -> None:
        """Every entry of the database, before a worker's first request."""
        while not self.sync(store):
            pass

    def _found(self, row: int, distance: int) -> dict:
        return {"entry": int(self._ids[row]), "distance": distance,
                **{f: self._strings[i] for f, i in zip(self.FIELDS, self._fields[row])}}

    def match(self, sha256: str, pdq: str | None, pdq_quality: int | None) -> dict | None:
        """The entry that matches ("entry", "distance": 0 for the same bytes, and FIELDS), or None."""
        with self._lock:
            if sha256 in self._by_sha:
                return self._found(self._row(self._by_sha[sha256]), 0)
            if not pdq or (pdq_quality or 0) < MIN_QUALITY or not self._matchable.any():
                return None
            query = np.frombuffer(bytes.fromhex(pdq), np.uint16)
            dist = POPCOUNT16[self._hashes ^ query].sum(axis=1, dtype=np.uint16)
            dist[~self._matchable] = np.iinfo(np.uint16).max
            best = int(np.argmin(dist))
            if dist[best] > MAX_DISTANCE:
                return None
            return self._found(best, int(dist[best]))
