"""Known images in the core (fakelens/known.py): hashing uploads and matching them against the banks' index."""
from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from fakelens.images import open_rgb
from fakelens.known import MAX_DISTANCE, MIN_QUALITY, PDQ_SIDE, SYNC_ROWS, Hashes, Index, Match, distance, hashes_of, pdq_of
from training.realworld import load_set, realworld_dir

WHEN = "2026-12-01T10:00:00+00:00"


def flipped(pdq: str, bits: int) -> str:
    """The hash with its first `bits` bits inverted: a copy at that Hamming distance."""
    value = int(pdq, 16) ^ (((1 << bits) - 1) << (256 - bits))
    return f"{value:064x}"


def as_columns(*entries: dict) -> dict:
    """Entries as the columns BankStore.entries_after gives an index."""
    return {k: [e.get(k) for e in entries] for k in ("entry", "sha256", "pdq", "pdq_quality", "replaces", *Index.FIELDS)}


def entry(n: int, pdq: str | None = None, **kw) -> dict:
    return {"entry": n, "sha256": None, "pdq": pdq, "pdq_quality": 90, "label": "FAKE", "bank": "reviewed",
            "note": f"note {n}", "scan_id": f"s{n}", "created_at": WHEN, **kw}


class Pages:
    """A bank store in memory: entries_after as the gateway's storage answers it."""

    def __init__(self, *entries: dict):
        self.entries, self.asked = list(entries), []

    def entries_after(self, last_id: int, limit: int | None = None) -> dict:
        self.asked.append((last_id, limit))
        return as_columns(*[e for e in self.entries if e["entry"] > last_id][:limit])


def test_a_match_reports_its_entry_and_the_distance_within_the_threshold():
    pdq = "5a" * 32
    index = Index()
    index.add(as_columns(entry(1, pdq, sha256="a" * 64, note="a render")))
    assert index.match(Hashes("b" * 64, flipped(pdq, MAX_DISTANCE), 90)) == Match(
        "reviewed", 1, "s1", MAX_DISTANCE, "FAKE", "a render", WHEN)
    assert index.match(Hashes("b" * 64, flipped(pdq, 3), MIN_QUALITY)).distance == 3  # quality at the floor counts
    assert index.match(Hashes("b" * 64, flipped(pdq, MAX_DISTANCE + 1), 90)) is None
    assert index.match(Hashes("b" * 64, pdq, MIN_QUALITY - 1)) is None  # a flat image's hash is noise
    assert index.match(Hashes("a" * 64, "", 0)) == Match("reviewed", 1, "s1", 0, "FAKE", "a render", WHEN)  # same bytes


def test_the_nearest_entry_wins():
    pdq = "5a" * 32
    index = Index()
    index.add(as_columns(entry(1, flipped(pdq, 20)), entry(2, flipped(pdq, 4)), entry(3, flipped(pdq, 12))))
    assert index.match(Hashes("0" * 64, pdq, 90)).entry == 2


def test_low_quality_entries_never_match_by_pdq_but_still_by_their_bytes():
    pdq = "5a" * 32
    index = Index()
    index.add(as_columns(entry(1, pdq, pdq_quality=MIN_QUALITY - 1, sha256="c" * 64), entry(2, None, sha256="d" * 64)))
    assert index.match(Hashes("0" * 64, pdq, 100)) is None
    assert index.match(Hashes("c" * 64, pdq, 100)).entry == 1 and index.match(Hashes("d" * 64, "", 0)).entry == 2
    assert Index().match(Hashes("0" * 64, pdq, 100)) is None  # an empty index


def test_a_later_review_retires_the_earlier_one_and_rows_seen_already_are_skipped():
    pdq = "5a" * 32
    index = Index()
    index.add(as_columns(entry(1, pdq, sha256="a" * 64)))
    index.add(as_columns(entry(1, pdq, sha256="a" * 64), entry(2, pdq, sha256="a" * 64, label="REAL", replaces=1)))
    assert len(index) == 1  # the retired row dropped once half the rows are retired; entry 1 not added twice
    assert index.match(Hashes("b" * 64, pdq, 90)).label == "REAL"
    assert index.match(Hashes("a" * 64, "", 0)) == Match("reviewed", 2, "s2", 0, "REAL", "note 2", WHEN)
    index.add(as_columns(entry(3, None, sha256="c" * 64, replaces=99)))  # replaces nothing this index holds
    assert index.match(Hashes("c" * 64, "", 0)).entry == 3 and index.match(Hashes("d" * 64, pdq, 90)).entry == 2


def test_a_retired_sha_is_forgotten_unless_a_later_entry_holds_it():
    index = Index()
    index.add(as_columns(entry(1, None, sha256="a" * 64), entry(2, None, sha256="a" * 64)))  # two banks, same bytes
    index.add(as_columns(entry(3, None, sha256="b" * 64, replaces=1)))
    assert index.match(Hashes("a" * 64, "", 0)).entry == 2  # entry 2 still holds those bytes
    index.add(as_columns(entry(4, None, sha256="e" * 64, replaces=2)))
    assert index.match(Hashes("a" * 64, "", 0)) is None


def test_the_index_keeps_each_hash_with_its_entry_when_it_drops_retired_rows():
    """Every entry reviewed again: the first hundred retire, the index drops them, and each hash must still
    report its own (new) entry."""
    rng = random.Random(0)
    hashes = [f"{rng.getrandbits(256):064x}" for _ in range(100)]
    index = Index()
    index.add(as_columns(*[{"entry": i + 1, "pdq": h, "pdq_quality": 90, "label": "FAKE", "note": f"first {i}"}
                           for i, h in enumerate(hashes)]))
    odd, even = list(range(1, 100, 2)), list(range(0, 100, 2))

    def again(at: list[int], first_id: int) -> dict:
        return as_columns(*[{"entry": first_id + k, "replaces": i + 1, "pdq": hashes[i], "pdq_quality": 90,
                             "label": "REAL", "note": f"again {i}"} for k, i in enumerate(at)])

    index.add(again(odd, 101))
    assert len(index) == 150  # a third retired: kept, and never matched
    index.add(again(even, 151))
    assert len(index) == 100  # half retired: dropped
    for i, h in enumerate(hashes):
        assert index.match(Hashes("0" * 64, h, 90)) == Match(
            None, 101 + odd.index(i) if i % 2 else 151 + even.index(i), None, 0, "REAL", f"again {i}", None)
    assert index.hash_bytes() == 100 * 32


def test_sync_reads_a_page_at_a_time_and_take_up_reads_until_caught_up():
    pages = Pages(*[entry(n, f"{n:064x}") for n in range(1, 2 * SYNC_ROWS + 11)])
    index = Index()
    assert index.sync(pages) is False and len(index) == SYNC_ROWS
    index.take_up(pages)
    assert len(index) == 2 * SYNC_ROWS + 10
    assert pages.asked == [(0, SYNC_ROWS), (SYNC_ROWS, SYNC_ROWS), (2 * SYNC_ROWS, SYNC_ROWS)]
    assert index.sync(pages) is True and pages.asked[-1] == (2 * SYNC_ROWS + 10, SYNC_ROWS)
    assert index.match(Hashes("0" * 64, f"{7:064x}", 100)).entry == 7


def test_hashes_of_an_upload():
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 200, 3), dtype=np.uint8))
    h = hashes_of(b"some bytes", rgb)
    assert h == Hashes("0d22cdcc10e6d049dbe1af5123d50873fdfc1a4f58306e58cb6241be9472014d", *pdq_of(rgb))
    assert len(h.pdq) == 64 and h.pdq_quality == 100  # noise: a hash of full quality


@pytest.mark.parametrize("a, b, bits", [("0" * 64, "0" * 64, 0), ("0" * 64, "f" * 64, 256), ("0" * 63 + "3", "0" * 64, 2)])
def test_distance_counts_differing_bits(a, b, bits):
    assert distance(a, b) == bits


def test_large_images_hash_the_same_at_any_size_and_close_to_a_full_resolution_hash():
    """Uploads are hashed from a downscaled copy (PDQ_SIDE), so a photo and its half-size copy hash alike, and a bank
    hashed at full resolution by another tool still matches."""
    large = [open_rgb(item["raw"]) for item in load_set(realworld_dir())]
    large = [im for im in large if min(im.size) >= 4 * PDQ_SIDE][:5]
    assert len(large) == 5
    for im in large:
        ours, quality = pdq_of(im)
        assert quality >= MIN_QUALITY
        assert distance(ours, pdq_of(im.resize((im.width // 2, im.height // 2), Image.LANCZOS))[0]) <= 8
        assert distance(ours, pdq_of(im, max_side=None)[0]) <= MAX_DISTANCE


def test_entries_taken_one_at_a_time_each_keep_their_own_hash_and_fields():
    """The columns grow as rows arrive; every row keeps its hash, its entry and what a match reports."""
    rng = random.Random(1)
    hashes = [f"{rng.getrandbits(256):064x}" for _ in range(12)]
    index = Index()
    for i, h in enumerate(hashes):
        index.add(as_columns(entry(i + 1, h, note=None if i % 3 == 0 else f"note {i % 2}", bank=f"bank {i % 4}",
                                   label="REAL" if i % 2 else "FAKE", scan_id=None, created_at=f"2026-12-0{i % 9 + 1}")))
        index.add(as_columns(entry(i + 1, h)))  # seen already: skipped
    assert len(index) == 12 and index.hash_bytes() == 12 * 32
    for i, h in enumerate(hashes):
        assert index.match(Hashes("0" * 64, h, 90)) == Match(
            f"bank {i % 4}", i + 1, None, 0, "REAL" if i % 2 else "FAKE", None if i % 3 == 0 else f"note {i % 2}",
            f"2026-12-0{i % 9 + 1}")


def test_an_entry_without_a_quality_never_matches_by_pdq():
    pdq = "5a" * 32
    index = Index()
    index.add(as_columns(entry(1, pdq, pdq_quality=None), entry(2, flipped(pdq, 9), pdq_quality=MIN_QUALITY)))
    assert index.match(Hashes("0" * 64, pdq, 90)).entry == 2  # entry 1 is nearer, but has no quality
    assert index.match(Hashes("0" * 64, pdq, 90)).distance == 9


def test_a_batch_partly_seen_takes_only_its_new_rows():
    index = Index()
    index.add(as_columns(entry(1, "11" * 32), entry(2, "22" * 32)))
    index.add(as_columns(entry(2, "33" * 32, note="again"), entry(3, "44" * 32)))
    assert len(index) == 3
    assert index.match(Hashes("0" * 64, "22" * 32, 90)).note == "note 2"
    assert index.match(Hashes("0" * 64, "33" * 32, 90)) is None
    assert index.match(Hashes("0" * 64, "44" * 32, 90)).entry == 3


def test_pdq_of_a_large_image_hashes_a_bilinear_copy_at_most_pdq_side_and_leaves_the_image_alone():
    rgb = Image.fromarray(np.random.default_rng(2).integers(0, 256, (150, 300, 3), dtype=np.uint8))
    small = rgb.copy()
    small.thumbnail((PDQ_SIDE, PDQ_SIDE), Image.BILINEAR)
    assert small.size == (128, 64)
    assert pdq_of(rgb) == pdq_of(small, max_side=None) != pdq_of(rgb, max_side=None)
    assert pdq_of(rgb, max_side=200) == pdq_of(rgb.resize((200, 100), Image.BILINEAR), max_side=None)
    assert rgb.size == (300, 150)
    exact = Image.fromarray(np.random.default_rng(3).integers(0, 256, (100, PDQ_SIDE, 3), dtype=np.uint8))
    assert pdq_of(exact) == pdq_of(exact, max_side=None)
    h, quality = pdq_of(rgb)
    assert len(h) == 64 and type(quality) is int


def test_a_retired_row_kept_in_the_index_never_matches_and_nor_does_a_row_without_a_hash():
    pdq = "5a" * 32
    index = Index()
    index.add(as_columns(entry(1, pdq), entry(2, "11" * 32), entry(3, "22" * 32), entry(4, None, sha256="d" * 64)))
    index.add(as_columns(entry(5, pdq, label="REAL", replaces=1)))
    assert len(index) == 5  # one of five retired: still scanned
    assert index.match(Hashes("0" * 64, pdq, 90)) == Match("reviewed", 5, "s5", 0, "REAL", "note 5", WHEN)
    assert index.match(Hashes("0" * 64, "00" * 32, 90)) is None  # entry 4 has no hash: its row is not all zeros to match


def test_each_distinct_string_is_stored_once():
    index = Index()
    index.add(as_columns(*[entry(n, f"{n:064x}", note="same") for n in range(1, 6)]))
    index.add(as_columns(entry(6, f"{6:064x}", note="same")))
    assert sorted(index._strings, key=str) == sorted([None, "reviewed", "FAKE", "same", WHEN, *(f"s{n}" for n in range(1, 7))],
                                                     key=str)
