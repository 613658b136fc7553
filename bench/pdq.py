"""`make pdq`: how far PDQ hashes move under the edits people make, how far apart unrelated images are,
what hashing an image costs, and what a bank of a million hashes costs: importing it, a worker taking
it up, its memory, and a query.

    python -m bench.pdq   # -> bench/results/pdq.json

Every image of the real-world dev set (FAKELENS_REALWORLD) is hashed as the gateway hashes uploads
(gateway/known.py), then resized, recompressed and cropped; each copy's distance to its original is
recorded, and every unrelated pair's distance. A copy "survives" when it would match (distance
<= MAX_DISTANCE, both qualities >= MIN_QUALITY).

`from_full_resolution` asks the same of a bank shared by another tool: its hash of the original is
PDQ over every pixel (as the reference tools compute it), and the image and its copies are hashed
the gateway's way.
"""
from __future__ import annotations

import argparse
import io
import itertools
import json
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from bench import RESULTS
from fakelens import known
from fakelens.images import open_rgb
from gateway.storage import Storage
from training import degrade
from training.realworld import load_set, realworld_dir

IMPORT_ROWS = 200_000  # a 20 MB upload (the gateway's default limit) holds about 250,000 CSV rows


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    return Image.open(io.BytesIO(degrade.encode("JPEG", quality)(img))).convert("RGB")


def crop(img: Image.Image, frac: float) -> Image.Image:
    w, h = img.size
    dx, dy = round(w * frac / 2), round(h * frac / 2)
    return img.crop((dx, dy, w - dx, h - dy))


EDITS = {
    "JPEG q90": lambda im: jpeg(im, 90),
    "JPEG q75": lambda im: jpeg(im, 75),
    "JPEG q50": lambda im: jpeg(im, 50),
    "resized 0.7x, JPEG q75": lambda im: jpeg(im.resize((round(im.width * 0.7), round(im.height * 0.7)), Image.LANCZOS), 75),
    "resized 0.5x": lambda im: im.resize((im.width // 2, im.height // 2), Image.LANCZOS),
    "resized 2x": lambda im: im.resize((im.width * 2, im.height * 2), Image.BICUBIC),
    "cropped 5%": lambda im: crop(im, 0.05),
    "cropped 10%": lambda im: crop(im, 0.10),
}

SHARED_EDITS = [name for name in EDITS if not name.startswith("cropped")]


def stats(d: list[int]) -> dict:
    a = np.array(d)
    return {"pairs": len(a), "min": int(a.min()), "median": float(np.median(a)), "p95": float(np.percentile(a, 95)),
            "max": int(a.max()), "within_threshold": int((a <= known.MAX_DISTANCE).sum())}


def hashing_time(images: list[Image.Image], sides: tuple = (known.PDQ_SIDE, 512, None)) -> dict:
    """CPU milliseconds per image of pdq_of, downscaling included, at the gateway's PDQ_SIDE and others
    (None: every pixel)."""
    out = {}
    for side in sides:
        start = time.process_time()
        for img in images:
            known.pdq_of(img, max_side=side)
        out[f"at most {side} px" if side else "every pixel"] = round((time.process_time() - start) * 1000 / len(images), 2)
    return out


def bank_of(n: int, repeats: int = 50) -> dict:
    """A shared list of n hashes imported into a fresh SQLite database (storage.banks.add_entries, as
    POST /v1/banks/<bank>/import does), taken up by an index (Index.take_up, as gunicorn's master does
    before it forks the workers), and queried: seconds, the index's memory, and milliseconds per query."""
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    shared = {"pdq": [h.tobytes().hex() for h in hashes], "pdq_quality": [100] * n, "label": ["FAKE"] * n,
              "note": ["a shared list"] * n}
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage(f"sqlite:///{tmp}/bank.db")
        storage.migrate()
        start = time.perf_counter()
        for i in tqdm(range(0, n, IMPORT_ROWS), desc=f"importing a bank of {n:,}", unit="request"):
            storage.banks.add_entries("bench", {k: v[i:i + IMPORT_ROWS] for k, v in shared.items()}, None)  # a request's worth
        imported = time.perf_counter() - start
        index = known.Index()
        start = time.perf_counter()
        index.take_up(storage.banks)
        synced = time.perf_counter() - start
        tracemalloc.start()
        taken_up = known.Index()  # a second one, to measure
        taken_up.take_up(storage.banks)
        size, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        size, peak = size + taken_up.hash_bytes(), peak + taken_up.hash_bytes()  # faiss's, unseen by tracemalloc
        del taken_up
    query = rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex()
    probe = known.Hashes("0" * 64, query, 100)
    index.match(probe)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        index.match(probe)
    return {"hashes": n, "taken_up": len(index), "import_s": round(imported, 1), "take_up_s": round(synced, 1),
            "index_mb": round(size / 2**20, 1), "take_up_peak_mb": round(peak / 2**20, 1),
            "ms_per_query": round((time.perf_counter() - start) / repeats * 1000, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--realworld", help="the real-world set (default: $FAKELENS_REALWORLD or ../shared/realworld-dev)")
    ap.add_argument("--out", type=Path, default=RESULTS / "pdq.json")
    args = ap.parse_args()
    originals, stems, distances, low, decoded = [], [], {name: [] for name in EDITS}, 0, []
    shared = {name: [] for name in ("same image", *SHARED_EDITS)}
    for item in tqdm(load_set(realworld_dir(args.realworld)), desc="hashing", unit="image"):
        rgb = open_rgb(item["raw"])
        decoded.append(rgb)
        pdq, quality = known.pdq_of(rgb)
        if quality < known.MIN_QUALITY:
            low += 1  # never matched, whatever the distance
            continue
        originals.append(pdq)
        stems.append(item["file"].rsplit(".", 1)[0])  # pillow__hopper.jpg, .bmp, .tif ...: one picture, five files
        reference, _ = known.pdq_of(rgb, max_side=None)
        shared["same image"].append(known.distance(reference, pdq))
        for name, edit in EDITS.items():
            copy, q = known.pdq_of(edit(rgb))
            distances[name].append(known.distance(pdq, copy) if q >= known.MIN_QUALITY else 256)
            if name in SHARED_EDITS:
                shared[name].append(known.distance(reference, copy) if q >= known.MIN_QUALITY else 256)
    pairs = list(itertools.combinations(zip(originals, stems), 2))
    unrelated = [known.distance(a, b) for (a, sa), (b, sb) in pairs if sa != sb]
    same = [known.distance(a, b) for (a, sa), (b, sb) in pairs if sa == sb]
    result = {"images": len(originals), "low_quality_never_matched": low, "threshold": known.MAX_DISTANCE,
              "copies": {name: stats(d) for name, d in distances.items()}, "unrelated_pairs": stats(unrelated),
              "from_full_resolution": {name: stats(d) for name, d in shared.items()},
              "same_picture_other_file": stats(same),
              "ms_per_image": hashing_time(decoded), "bank": bank_of(1_000_000)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, s in result["copies"].items():
        print(f"{name:24s} median {s['median']:5.1f}  p95 {s['p95']:5.1f}  max {s['max']:3d}  "
              f"match {s['within_threshold']}/{s['pairs']}")
    for name, s in result["from_full_resolution"].items():
        print(f"from a full-resolution hash, {name:24s} median {s['median']:5.1f}  p95 {s['p95']:5.1f}  "
              f"match {s['within_threshold']}/{s['pairs']}")
    u = result["unrelated_pairs"]
    print(f"unrelated pairs: {u['pairs']}, min {u['min']}, median {u['median']}, within threshold {u['within_threshold']}")
    print(f"same picture in another file: {result['same_picture_other_file']}")
    print(f"hashing, CPU ms per image: {result['ms_per_image']}")
    print(f"a bank of {result['bank']['hashes']:,} hashes: {result['bank']}")


if __name__ == "__main__":
    main()
