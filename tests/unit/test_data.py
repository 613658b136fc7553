"""The CIFAKE loader on the real archives, and its errors on broken ones."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from training import data


@pytest.fixture(scope="module")
def cifake():
    return data.load(with_test=True)


def test_counts_and_labels(cifake):
    assert len(cifake.test) == 20_000
    assert (cifake.test.y == 1).sum() == 10_000  # FAKE = 1
    assert all(n.startswith("FAKE/") == bool(y) for n, y in zip(cifake.test.names[::97], cifake.test.y[::97]))
    assert len(cifake.val) == 10_000 and cifake.val.y.mean() == 0.5  # stratified
    # 100,000 train images minus the duplicates the data README lists
    assert cifake.dropped == {"train_also_in_test": 378, "train_repeats": 920}
    assert len(cifake.train) + len(cifake.val) == 100_000 - 378 - 920


def test_training_loads_never_hand_out_the_test_split():
    assert data.load().test is None


def test_splits_are_disjoint_and_fixed(cifake):
    assert not set(cifake.train.names) & set(cifake.val.names)
    again = data.load()
    assert (again.val.names == cifake.val.names).all()


def test_pixels_are_pillow_rgb_hwc(cifake):
    assert cifake.test.x.shape == (20_000, 32, 32, 3) and cifake.test.x.dtype == np.uint8


def test_missing_archive_says_where_to_look(tmp_path):
    with pytest.raises(data.DataError, match="FAKELENS_DATA"):
        data.load(tmp_path, cache_dir=tmp_path / "cache")


def test_corrupt_archive_is_reported(tmp_path):
    (tmp_path / "cifake-train.zip").write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(data.DataError, match="not a readable zip"):
        data.load(tmp_path, cache_dir=tmp_path / "cache")


def test_undecodable_member_is_named(tmp_path):
    with zipfile.ZipFile(tmp_path / "cifake-train.zip", "w") as z:
        z.writestr("REAL/0001.jpg", b"\xff\xd8 truncated jpeg")
    with pytest.raises(data.DataError, match="REAL/0001.jpg"):
        data.decode_archive(tmp_path / "cifake-train.zip")


def test_member_outside_classes_is_rejected(tmp_path):
    with zipfile.ZipFile(tmp_path / "cifake-train.zip", "w") as z:
        z.writestr("OTHER/x.jpg", b"")
    with pytest.raises(data.DataError, match="outside REAL/ and FAKE/"):
        data.decode_archive(tmp_path / "cifake-train.zip")


@pytest.mark.parametrize("limit", [1, 3])
def test_tiny_limits_keep_both_splits_and_never_cache_as_the_full_archive(tmp_path, limit):
    ds = data.load(limit=limit, cache_dir=tmp_path, with_test=True)
    assert len(ds.test) == 2 and set(ds.test.y) == {0, 1}  # one of each class, never an empty test split
    assert len(ds.train) + len(ds.val) == 2
    assert not [p.name for p in tmp_path.glob("*-all.npz")]  # the full archives' cache keys stay untouched
