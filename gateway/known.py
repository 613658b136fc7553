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

The index lives in each gateway worker and follows the database: `sync` reads the entries added
since the last one it saw, at most every SYNC_S seconds, so a review in one worker is matched by
every worker within a second. A query is a scan over packed bits (numpy, a 16-bit popcount
table): about 50 ms over a million hashes on this 2-core machine (make pdq). Past a million,
faiss-cpu's IndexBinaryFlat does the same scan several times faster, and its multi-index hashing
sublinearly.
"""
from __future__ import annotations

import hashlib
import threading
import time

import numpy as np
import pdqhash
from PIL import Image

MAX_DISTANCE = 31
MIN_QUALITY = 50
PDQ_SIDE = 128
SYNC_S = 0.5
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
    """The banks' entries in force, matchable by SHA-256 and PDQ; safe to share between request threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_id = 0
        self._synced = 0.0
        self._entries: dict[int, dict] = {}  # entry id -> entry, those in force
        self._by_sha: dict[str, int] = {}
        self._ids = np.zeros(0, dtype=np.int64)  # PDQ rows: entry id, packed hash
        self._hashes = np.zeros((0, 16), dtype=np.uint16)

    def add(self, new: list[dict]) -> None:
        """Entries in id order; one that `replaces` another retires it."""
        with self._lock:
            ids, hashes = [], []
            for e in new:
                self._last_id = max(self._last_id, e["entry"])
                old = self._entries.pop(e.get("replaces") or 0, None)
                if old:
                    if self._by_sha.get(old["sha256"]) == old["entry"]:
                        del self._by_sha[old["sha256"]]
                    self._ids[self._ids == old["entry"]] = -1  # retired: never the nearest
                self._entries[e["entry"]] = e
                if e.get("sha256"):
                    self._by_sha[e["sha256"]] = e["entry"]
                if e.get("pdq") and (e.get("pdq_quality") or 0) >= MIN_QUALITY:
                    ids.append(e["entry"])
                    hashes.append(bytes.fromhex(e["pdq"]))
            if ids:
                self._ids = np.concatenate([self._ids, np.array(ids, dtype=np.int64)])
                self._hashes = np.concatenate([self._hashes, np.frombuffer(b"".join(hashes), np.uint16).reshape(-1, 16)])
            live = self._ids >= 0
            if 2 * live.sum() <= len(live):  # half or more retired rows: every query would scan them, so drop them
                self._ids, self._hashes = self._ids[live], self._hashes[live]

    def __len__(self) -> int:
        """PDQ rows a query scans, retired ones included."""
        return len(self._ids)

    def sync(self, store) -> None:
        """Take the entries the database has and this index has not, at most every SYNC_S seconds."""
        if time.monotonic() - self._synced < SYNC_S:
            return
        self._synced = time.monotonic()
        new = store.entries_after(self._last_id)
        if new:
            self.add(new)

    def match(self, sha256: str, pdq: str | None, pdq_quality: int | None) -> dict | None:
        """The entry that matches, with its "distance" (0 for the same bytes), or None."""
        with self._lock:
            if sha256 in self._by_sha:
                return {**self._entries[self._by_sha[sha256]], "distance": 0}
            if not pdq or (pdq_quality or 0) < MIN_QUALITY or not len(self._ids):
                return None
            query = np.frombuffer(bytes.fromhex(pdq), np.uint16)
            dist = POPCOUNT16[self._hashes ^ query].sum(axis=1, dtype=np.uint16)
            dist[self._ids < 0] = np.iinfo(np.uint16).max
            best = int(np.argmin(dist))
            if dist[best] > MAX_DISTANCE:
                return None
            return {**self._entries[int(self._ids[best])], "distance": int(dist[best])}
