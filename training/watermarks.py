"""The generator-watermark thresholds, measured: how many bits of each mark unmarked images match by
chance, and what survives the re-saves people make of marked ones.

    python -m training.watermarks   # -> training/results/watermarks.json + watermarks.png

Unmarked images, each decoded as the gateway decodes (both channel orders, float path):
- the real-world dev set, as shipped and in the other container (FAKELENS_REALWORLD);
- CIFAKE test images enlarged to 256 px (nearest, bilinear, bicubic): the smallest size that carries a mark;
- synthetic patterns the fuzz tests would never think of as images: noise, flat colours, gradients,
  stripes and checkerboards, where a decoder's votes are most correlated.
The threshold of each mark (fakelens/watermark.py MARKS) must sit above the best match of every
one of these; the margin is the gap. The marked side embeds each message with invisible-watermark's
own encoder (a test-only dependency) into dev photos and saves them the ways people do.
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import io
import json
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image
from tqdm import tqdm

from fakelens import watermark
from fakelens.images import open_rgb
from training import data
from training.paths import RESULTS
from training.realworld import load_set, other_container, realworld_dir

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MAX_PIXELS = 50_000_000


@functools.cache
def reference_encoder():
    """imwatermark's maxDct module, loaded by path: the package's __init__ imports torch, which we do not need."""
    import imwatermark  # noqa: F401 - installed with --no-deps; only its folder is used
    spec = importlib.util.find_spec("imwatermark")
    path = Path(spec.submodule_search_locations[0]) / "maxDct.py"
    module_spec = importlib.util.spec_from_file_location("imwatermark_maxdct", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def embed(rgb: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """uint8 RGB with `bits` embedded as the generators do: float BGR through EmbedMaxDct, rounded back."""
    encoder = reference_encoder().EmbedMaxDct(list(int(b) for b in bits), wmLen=len(bits))
    bgr = encoder.encode(np.ascontiguousarray(rgb[:, :, ::-1], dtype=np.float32))
    return np.clip(np.round(bgr[:, :, ::-1]), 0, 255).astype(np.uint8)


def patterns(side: int = 512, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(20)]  # noise
    out += [np.full((side, side, 3), c, np.uint8) for c in ((0, 0, 0), (255, 255, 255), (128, 128, 128), (255, 0, 0),
                                                            (0, 0, 255), (30, 200, 90))]
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    for a, b in ((0, 1), (1, 0), (2, 1)):
        img = np.zeros((side, side, 3), np.float32)
        img[..., a] = ramp[None, :]
        img[..., b] = ramp[:, None]
        out.append(img.astype(np.uint8))
    for period in (2, 3, 4, 8, 16, 64):
        stripes = ((np.arange(side) // period) % 2 * 255).astype(np.uint8)
        out.append(np.repeat(np.repeat(stripes[None, :, None], side, 0), 3, 2))
        board = (((np.arange(side)[:, None] // period) + (np.arange(side)[None, :] // period)) % 2 * 255).astype(np.uint8)
        out.append(np.stack([board, 255 - board, board], axis=2))
    return out


def cifake_enlarged(n: int = 300) -> list[np.ndarray]:
    test = data.load(None, with_test=True).test
    pick = np.random.default_rng(0).choice(len(test.x), n, replace=False)
    filters = (Image.NEAREST, Image.BILINEAR, Image.BICUBIC)
    return [np.asarray(Image.fromarray(test.x[i]).resize((256, 256), filters[k % 3])) for k, i in enumerate(pick)]


def unmarked(folder: Path) -> dict[str, list[np.ndarray]]:
    dev = []
    for item in load_set(folder):
        for raw in (item["raw"], other_container(item["raw"], item["label"])):
            rgb = np.asarray(open_rgb(raw, MAX_PIXELS))
            if rgb.shape[0] * rgb.shape[1] >= watermark.MIN_PIXELS:
                dev.append(rgb)
    return {"real-world dev set (both containers)": dev, "CIFAKE test, enlarged to 256 px": cifake_enlarged(),
            "synthetic patterns": patterns()}


def resaved(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """A marked image after the saves people make of it."""
    img = Image.fromarray(rgb)

    def jpeg(**kw) -> np.ndarray:
        buf = io.BytesIO()
        img.save(buf, "JPEG", **kw)
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    w, h = img.size
    return {"PNG": rgb, "JPEG q95 4:4:4": jpeg(quality=95, subsampling=0), "JPEG q90 4:4:4": jpeg(quality=90, subsampling=0),
            "JPEG q95 4:2:0 (Pillow's default)": jpeg(quality=95),
            "resized 0.5x": np.asarray(img.resize((w // 2, h // 2), Image.LANCZOS)),
            "cropped 10%": rgb[h // 20: h - h // 20, w // 20: w - w // 20]}


def measure(folder: Path) -> dict:
    report = {"unmarked": {}, "marked": {}, "thresholds": {m.generator: {"min_matched": m.min_matched, "of": len(m.bits)}
                                                           for m in watermark.MARKS}}
    best = {m.generator: 0 for m in watermark.MARKS}
    for name, images in unmarked(folder).items():
        scores = [watermark.best_matches(rgb) for rgb in tqdm(images, desc=name, unit="image")]
        report["unmarked"][name] = {"images": len(images), "max_matched": {g: max(s[g] for s in scores) for g in best},
                                    "false_positives": sum(bool(watermark.found(rgb)) for rgb in images)}
        for g in best:
            best[g] = max(best[g], report["unmarked"][name]["max_matched"][g])
    for m in watermark.MARKS:
        t = report["thresholds"][m.generator]
        t.update({"max_unmarked": best[m.generator], "margin_bits": m.min_matched - best[m.generator]})
    hosts = unmarked_photos(folder)[:6]
    for m in watermark.MARKS:
        rows = {}
        for rgb in hosts:
            for save, out in resaved(embed(rgb, m.bits)).items():
                rows.setdefault(save, []).append(watermark.best_matches(out)[m.generator])
        report["marked"][m.generator] = {save: {"min": min(v), "median": float(np.median(v)),
                                                "detected": sum(x >= m.min_matched for x in v), "of_images": len(v)}
                                         for save, v in rows.items()}
    return report


def unmarked_photos(folder: Path) -> list[np.ndarray]:
    """Dev-set photos of 512 px or more: the hosts the marked side embeds into."""
    out = []
    for item in load_set(folder):
        if item["label"] == "real_photo":
            rgb = np.asarray(open_rgb(item["raw"], MAX_PIXELS))
            if min(rgb.shape[:2]) >= 512:
                out.append(rgb[:1024, :1024])
    return out


def plot(report: dict, path: Path) -> None:
    marks = list(report["thresholds"])
    fig, ax = plt.subplots(figsize=(8, 3.6))
    y = np.arange(len(marks))
    t = report["thresholds"]
    ax.barh(y, [t[g]["max_unmarked"] / t[g]["of"] for g in marks], color="slategray", label="best unmarked image")
    ax.scatter([t[g]["min_matched"] / t[g]["of"] for g in marks], y, color="red", marker="|", s=400, label="threshold")
    ax.scatter([report["marked"][g]["JPEG q95 4:4:4"]["min"] / t[g]["of"] for g in marks], y, color="tab:green",
               label="worst marked, JPEG q95 4:4:4")
    ax.set(yticks=y, yticklabels=[f"{g} ({t[g]['of']} bits)" for g in marks], xlim=(0.4, 1.02),
           xlabel="share of the mark's bits matched", title="Generator watermarks: unmarked vs marked")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--realworld", help="the real-world set (default: $FAKELENS_REALWORLD or ../shared/realworld-dev)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    report = measure(realworld_dir(args.realworld))
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "watermarks.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.results / "watermarks.png")
    for g, t in report["thresholds"].items():
        print(f"{g:20s} threshold {t['min_matched']}/{t['of']}  best unmarked {t['max_unmarked']}  margin {t['margin_bits']} bits  "
              + "  ".join(f"{save}: {r['detected']}/{r['of_images']}" for save, r in report["marked"][g].items()))


if __name__ == "__main__":
    main()
