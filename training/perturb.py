"""The perturbation benchmark: the served models and verdict on degraded CIFAKE test images.

    python -m training.perturb   # -> training/results/perturb.json + perturb.png

Each degradation of training/degrade.py (BATTERY, and the HELD_BACK battery of the same
kinds with other settings) is applied to the same test images; the result is uploaded as
the bytes a user would send (lossless PNG, or the JPEG/WebP the degradation wrote) and
judged as served (realworld.Served: the core's examiner and judge, the TorchScript files, the
verdict rule from the model repository). With `--url` the same uploads go to a running
service instead (fakelens_client), and the table is written as perturb-gateway.json/png.
"""
from __future__ import annotations

import argparse
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from bench.load import sample_test_images
from fakelens_client import DEFAULT_BATCH, DEFAULT_CONCURRENCY, Client
from training import degrade
from training import rule as rule_file
from training.paths import REPOSITORY, RESULTS
from training.realworld import Served

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def upload_bytes(out: Image.Image | bytes) -> bytes:
    if isinstance(out, bytes):
        return out
    buf = io.BytesIO()
    out.save(buf, "PNG")
    return buf.getvalue()


class Gateway:
    """The uploads sent to a running service, answered in Served's row shape."""

    def __init__(self, url: str, repository: Path = REPOSITORY):
        self.client = Client(url)
        self.rule = rule_file.load(repository)  # only its threshold, for the per-model columns

    def __call__(self, raws: list[bytes]) -> list[dict]:
        chunks = [raws[i:i + DEFAULT_BATCH] for i in range(0, len(raws), DEFAULT_BATCH)]
        with ThreadPoolExecutor(DEFAULT_CONCURRENCY) as pool:
            answers = [a for chunk in pool.map(self.client.predict_batch, chunks) for a in chunk]
        return [{"verdict": a["verdict"], "models": {m: v["prob_fake"] for m, v in a["models"].items()}}
                for a in answers]


def score(served: Served | Gateway, images: list[tuple[str, bytes, int]], fn: degrade.Degrade, chunk: int = 250) -> dict:
    labels = np.array([y for *_, y in images])
    rows = []
    for start in range(0, len(images), chunk):
        raws = [upload_bytes(fn(Image.open(io.BytesIO(raw)).convert("RGB"))) for _, raw, _ in images[start:start + chunk]]
        rows += served(raws)
    verdicts = np.array([r["verdict"] for r in rows])
    decided = verdicts != "UNSURE"
    right = verdicts == np.where(labels == 1, "FAKE", "REAL")
    out = {"images": len(rows), "unsure_rate": round(float((~decided).mean()), 4),
           "decided_accuracy": round(float(right[decided].mean()) if decided.any() else float("nan"), 4),
           "accuracy_all": round(float(right.mean()), 4)}
    for model in rows[0]["models"]:
        p = np.array([r["models"][model] for r in rows])
        out[f"{model}_accuracy"] = round(float(((p >= served.rule.threshold) == labels).mean()), 4)
    return out


def plot(table: dict, path: Path) -> None:
    names = list(table["battery"]) + list(table["held_back"])
    rows = {**table["battery"], **table["held_back"]}
    models = [k.removesuffix("_accuracy") for k in rows["none"] if k.endswith("_accuracy") and k != "decided_accuracy"]
    fig, (ax, un) = plt.subplots(1, 2, figsize=(14, 0.32 * len(names) + 1.5), sharey=True)
    y = np.arange(len(names))
    for i, m in enumerate(models):
        ax.barh(y + (i - 1.5) * 0.2, [rows[n][f"{m}_accuracy"] for n in names], 0.2, label=f"{m} (thumbnail)")
    ax.barh(y + 1.5 * 0.2, [rows[n]["decided_accuracy"] for n in names], 0.2, color="black", label="verdict, decided")
    ax.axvline(0.95, color="red", ls="--", lw=1, label="bar 0.95")
    ax.set(xlim=(0.4, 1), yticks=y, yticklabels=[n + (" *" if n in table["held_back"] else "") for n in names],
           xlabel="accuracy", title="Degraded CIFAKE test images (* held back)")
    ax.invert_yaxis()
    ax.legend(loc="lower left", fontsize=8)
    un.barh(y, [rows[n]["unsure_rate"] for n in names], color="slategray")
    un.axvline(0.2, color="red", ls="--", lw=1)
    un.set(xlim=(0, 1), xlabel="share UNSURE", title="UNSURE (bar 20%)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate(repository: Path, results: Path, count: int, url: str | None = None) -> dict:
    served = Gateway(url, repository) if url else Served(repository)
    stem = "perturb-gateway" if url else "perturb"
    images = sample_test_images(count)
    table = {"images": count, "judged_by": url or "in process (realworld.Served)",
             "note": "decided_accuracy: share of REAL/FAKE verdicts that are right; "
             "<model>_accuracy: that model alone on the thumbnail, threshold 0.5", "battery": {}, "held_back": {}}
    for group, battery in (("battery", degrade.BATTERY), ("held_back", degrade.HELD_BACK)):
        for name, fn in tqdm(battery.items(), desc=group, unit="perturbation"):
            table[group][name] = score(served, images, fn)
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{stem}.json").write_text(json.dumps(table, indent=2) + "\n")
    plot(table, results / f"{stem}.png")
    for group in ("battery", "held_back"):
        for name, r in table[group].items():
            print(f"{name:28s} decided acc {r['decided_accuracy']:.3f}  UNSURE {r['unsure_rate']:.1%}  "
                  + "  ".join(f"{k.removesuffix('_accuracy')} {v:.3f}" for k, v in r.items() if k.endswith("y") and "_" in k
                              and k not in ("decided_accuracy", "accuracy_all")))
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repository", type=Path, default=REPOSITORY)
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--images", type=int, default=1000, help="test images per perturbation (both classes)")
    ap.add_argument("--url", help="judge through this running service (e.g. http://127.0.0.1:8080 of `make up`)")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    evaluate(args.repository, args.results, args.images, args.url)


if __name__ == "__main__":
    main()
