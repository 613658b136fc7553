"""CIFAKE loading: zip archives -> a decoded uint8 cache -> deduplicated, split arrays.

The archives hold 120k tiny JPEGs. Decoding them costs ~30 s, so we decode once
into a .npz cache keyed by the archive's size and mtime, and every later run
loads plain arrays in well under a second.
"""
from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from training import paths

CLASSES = ("REAL", "FAKE")  # label = index: FAKE is the positive class
VAL_SIZE = 10_000
SPLIT_SEED = 0


class DataError(RuntimeError):
    """The CIFAKE archives are missing or unreadable."""


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """CLI flag beats the FAKELENS_DATA environment variable beats ../shared/data."""
    return Path(override or os.environ.get("FAKELENS_DATA") or paths.DATA)


@dataclass
class Split:
    x: np.ndarray  # uint8 [N, 32, 32, 3], RGB, HWC: exactly what Pillow decodes
    y: np.ndarray  # int64 [N], 0 = REAL, 1 = FAKE
    names: np.ndarray  # member names, for tracing a prediction back to a file

    def __len__(self) -> int:
        return len(self.y)

    def take(self, idx: np.ndarray) -> Split:
        return Split(self.x[idx], self.y[idx], self.names[idx])


def decode_archive(path: Path, limit: int | None = None) -> tuple[Split, np.ndarray]:
    """Decode every member of a CIFAKE zip. Returns the split and each member's sha256."""
    if not path.is_file():
        raise DataError(f"CIFAKE archive not found: {path} (set FAKELENS_DATA or --data to the folder holding it)")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path} is not a readable zip archive: {exc}") from exc
    with archive:
        members = [m for m in archive.namelist() if not m.endswith("/")]
        if limit is not None:  # a stratified few for quick runs: both classes, evenly
            per_class = [[m for m in members if m.startswith(c + "/")][: max(1, limit // 2)] for c in CLASSES]
            members = per_class[0] + per_class[1]
        x = np.empty((len(members), 32, 32, 3), np.uint8)
        y = np.empty(len(members), np.int64)
        digests = []
        for i, name in enumerate(tqdm(members, desc=f"decode {path.name}", unit="img", leave=False)):
            top = name.split("/", 1)[0]
            if top not in CLASSES:
                raise DataError(f"{path}: member {name!r} is outside REAL/ and FAKE/")
            try:
                raw = archive.read(name)
                img = Image.open(io.BytesIO(raw)).convert("RGB")
            except Exception as exc:  # zlib, CRC and PIL errors all mean the same thing here
                raise DataError(f"{path}: member {name!r} cannot be decoded: {exc}") from exc
            if img.size != (32, 32):
                raise DataError(f"{path}: member {name!r} is {img.size}, expected 32x32")
            x[i] = np.asarray(img)
            y[i] = CLASSES.index(top)
            digests.append(hashlib.sha256(raw).hexdigest())
    return Split(x, y, np.array(members)), np.array(digests)


def _cached(path: Path, cache_dir: Path, limit: int | None) -> tuple[Split, np.ndarray]:
    stat = path.stat() if path.is_file() else None
    key = f"{path.stem}-{stat.st_size}-{int(stat.st_mtime)}-{'all' if limit is None else limit}" if stat else None
    cache = cache_dir / f"{key}.npz"
    if key and cache.is_file():
        z = np.load(cache)
        return Split(z["x"], z["y"], z["names"]), z["sha"]
    split, sha = decode_archive(path, limit)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Write then rename: an interrupted run leaves no half cache, and processes decoding
    # at the same time (make sweep) each rename a whole file of their own.
    tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, x=split.x, y=split.y, names=split.names, sha=sha)
    tmp.rename(cache)
    return split, sha


@dataclass
class Cifake:
    train: Split
    val: Split
    test: Split | None  # only for evaluation: training, tuning and calibration load without it
    dropped: dict  # what deduplication removed from train+val, by reason


def load(data: str | os.PathLike | None = None, cache_dir: Path = paths.CACHE,
         limit: int | None = None, val_size: int = VAL_SIZE, with_test: bool = False) -> Cifake:
    """Train/val(/test) arrays. Val is carved from the official train split; test is untouched
    and handed out only with `with_test` (evaluation); deduplication needs only its hashes.

    Exact duplicates (see the data README) are removed from train and val: every
    train image whose bytes also occur in test, and all but one copy of
    in-train duplicates, so the test score is not inflated by memorised images.
    """
    root = data_dir(data)
    full, full_sha = _cached(root / "cifake-train.zip", cache_dir, limit)
    test, test_sha = _cached(root / "cifake-test.zip", cache_dir, None if limit is None else max(2, limit // 4))

    in_test = np.isin(full_sha, test_sha)
    _, first = np.unique(full_sha, return_index=True)
    repeat = np.ones(len(full_sha), bool)
    repeat[first] = False
    keep = ~in_test & ~repeat
    dropped = {"train_also_in_test": int(in_test.sum()), "train_repeats": int((repeat & ~in_test).sum())}
    kept = full.take(np.flatnonzero(keep))

    # Stratified, fixed split: the same val images on every machine and every run.
    rng = np.random.default_rng(SPLIT_SEED)
    val_size = min(val_size, len(kept) // 5)
    val_idx = np.concatenate([
        rng.permutation(np.flatnonzero(kept.y == c))[: val_size // 2] for c in range(len(CLASSES))
    ])
    is_val = np.zeros(len(kept), bool)
    is_val[val_idx] = True
    return Cifake(kept.take(np.flatnonzero(~is_val)), kept.take(np.sort(val_idx)), test if with_test else None,
                  dropped)
