"""Images from outside CIFAKE: the committed models, as served, on the real-world dev set.

    python -m training.realworld   # -> training/results/realworld.json + realworld.png

"As served" means the core the gateway runs (fakelens) on the bytes a user uploads: its examiner
(provenance from the file and its pixels, EXIF orientation, thumbnail, CIFAKE's JPEG), the
TorchScript files Triton serves, and its judge under the verdict rule from the model repository.
Every image is also scored saved in the other container (AI images as PNG, the rest as
lossless WebP: the same pixels), since in this set every AI image happens to be a WebP.

The set (default ../shared/realworld-dev, or FAKELENS_REALWORLD) is for measuring and
choosing thresholds only, never for training weights.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
from pathlib import Path

import matplotlib
import numpy as np
import torch
from PIL import Image, ImageOps
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from fakelens.contract import rule_of
from fakelens.examine import Examiner
from fakelens.images import BadImage
from fakelens.judge import Judge, Judgement
from fakelens.torchscript import TorchScript
from fakelens.verdict import Rule
from training.paths import REALWORLD, REPOSITORY, RESULTS

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RIGHT = {"real_photo": "REAL", "human_nonphoto": "REAL", "ai_generated": "FAKE"}  # human-made art is not AI
BATCH = 500  # images per model call in this process


def realworld_dir(override: str | os.PathLike | None = None) -> Path:
    return Path(override or os.environ.get("FAKELENS_REALWORLD") or REALWORLD)


def load_set(folder: Path) -> list[dict]:
    """[{file, label, raw}] from labels.csv and images/."""
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [{"file": r["file"], "label": r["label"], "raw": (folder / "images" / r["file"]).read_bytes()} for r in rows]


def other_container(raw: bytes, label: str) -> bytes:
    """The same pixels in the other container: AI images as PNG, the rest as lossless WebP."""
    img = ImageOps.exif_transpose(Image.open(io.BytesIO(raw)))
    img = img.convert("RGBA" if img.mode in ("RGBA", "LA", "PA", "P") else "RGB")
    buf = io.BytesIO()
    if label == "ai_generated":
        img.save(buf, "PNG")
    else:
        img.save(buf, "WEBP", lossless=True, method=0)  # lossless whatever the method; 0 is fastest
    return buf.getvalue()


class Served:
    """The gateway's decision for a list of uploads, computed in this process by the same core."""

    def __init__(self, repository: Path = REPOSITORY):
        self.backend = TorchScript(repository, batch_size=BATCH)
        self.rule: Rule = rule_of({m: c.parameters for m, c in self.backend.contracts.items()})
        self.examine, self.judge = Examiner(), Judge()

    def __call__(self, raws: list[bytes]) -> list[dict]:
        """A row per upload: the decision, the combined and per-model P(FAKE), size and detail lost;
        {"verdict": None, "error": ...} for a file that cannot be judged."""
        examined, errors = [], {}
        for i, raw in enumerate(raws):
            try:
                examined.append(self.examine(raw))
            except BadImage as exc:
                errors[i] = str(exc)
        judged = iter(self.judge.judge(examined, self.backend.fan_out(np.stack([e.upload.pixels for e in examined])))
                      if examined else [])
        return [{"verdict": None, "error": errors[i]} if i in errors else _row(next(judged)) for i in range(len(raws))]


def _row(j: Judgement) -> dict:
    d, r = j.decision, j.reading
    return {"verdict": d.verdict, "decided_by": d.decided_by, "confidence": d.confidence, "domain": d.domain,
            "models_used": d.models_used, "reason": d.reason, "prob_fake": r.prob_fake, "models": r.p_models,
            "detail_lost": r.detail_lost, "size": list(r.size)}


def figures(rows: list[dict]) -> dict:
    """Per label: REAL / FAKE / UNSURE counts, decided, right, wrong; overall: the share of decided verdicts right."""
    out = {}
    for label in RIGHT:
        mine = [r for r in rows if r["label"] == label]
        n = len(mine)
        counts = {v: sum(r["verdict"] == v for r in mine) for v in ("REAL", "FAKE", "UNSURE")}
        counts["error"] = sum(r["verdict"] is None for r in mine)
        wrong = sum(r["verdict"] in ("REAL", "FAKE") and r["verdict"] != RIGHT[label] for r in mine)
        right = sum(r["verdict"] == RIGHT[label] for r in mine)
        out[label] = {"images": n, **counts, "decided": right + wrong, "wrong": wrong,
                      "wrong_rate": round(wrong / max(n, 1), 4), "right": right, "coverage": round(right / max(n, 1), 4),
                      "unsure_rate": round(counts["UNSURE"] / max(n, 1), 4)}
    decided = sum(out[label]["decided"] for label in RIGHT)
    out["decided"] = decided
    out["decided_right"] = round(sum(out[label]["right"] for label in RIGHT) / decided, 4) if decided else None
    out["by_models"] = sum(r.get("decided_by") == "models" for r in rows)
    scored = [r for r in rows if r["label"] in ("ai_generated", "real_photo") and r.get("prob_fake") is not None]
    out["roc_auc_ai_vs_real_photo"] = round(float(roc_auc_score(
        [r["label"] == "ai_generated" for r in scored], [r["prob_fake"] for r in scored])), 4)
    return out


def markdown_table(report: dict) -> str:
    """The README's table, from realworld.json."""
    lines = ["| label | images | container | decided | right | wrong | UNSURE |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for label in RIGHT:
        for container in ("as_shipped", "other_container"):
            f = report[container][label]
            lines.append(f"| {label} | {f['images']} | {container.replace('_', ' ')} | {f['decided']} | {f['right']} | "
                         f"{f['wrong']} ({f['wrong_rate']:.0%}) | {f['UNSURE']} ({f['unsure_rate']:.0%}) |")
    for container in ("as_shipped", "other_container"):
        f = report[container]
        share = "none decided" if f["decided_right"] is None else f"{f['decided_right']:.0%}"
        lines.append(f"| all | {report['images']} | {container.replace('_', ' ')} | {f['decided']} | "
                     f"decided right: {share} | | |")
    return "\n".join(lines) + "\n"


def reliability_plot(rows: list[dict], path: Path, bins: int = 10) -> None:
    """Predicted P(FAKE) of the thumbnail against the fraction that is AI-generated, dev set vs the diagonal."""
    scored = [r for r in rows if r.get("prob_fake") is not None]
    p = np.array([r["prob_fake"] for r in scored])
    y = np.array([r["label"] == "ai_generated" for r in scored], dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    fig, (ax, hist) = plt.subplots(1, 2, figsize=(10, 4.2))
    mids = [(edges[b] + edges[b + 1]) / 2 for b in range(bins) if (idx == b).any()]
    frac = [y[idx == b].mean() for b in range(bins) if (idx == b).any()]
    ax.plot([0, 1], [0, 1], "--", color="grey", label="calibrated")
    ax.plot(mids, frac, "o-", color="tab:red", label="images from outside CIFAKE")
    ax.set(xlabel="models' P(FAKE) of the 32x32 thumbnail", ylabel="fraction actually AI-generated",
           title="Reliability outside CIFAKE", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    limits = next(iter(scored), {}).get("limits")
    for label, color in (("real_photo", "tab:blue"), ("human_nonphoto", "tab:green"), ("ai_generated", "tab:red")):
        mine = [r for r in scored if r["label"] == label]
        hist.scatter([max(r["size"]) for r in mine], [r["detail_lost"] for r in mine], s=14, alpha=0.7, color=color,
                     label=label)
    if limits:
        side, detail = limits
        hist.fill_between([32, side], 0, detail, color="grey", alpha=0.2, label="where the models may decide")
    hist.set(xscale="log", xlabel="longer side (px)", ylabel="detail the 32x32 view discards (grey levels)",
             title="Outside the models' domain")
    hist.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate(folder: Path, repository: Path, results: Path) -> dict:
    images = load_set(folder)
    served = Served(repository)
    report = {"images": len(images), "source": str(folder), "rule": {
        "weights": served.rule.weights, "threshold": served.rule.threshold,
        "unsure_margin": served.rule.unsure_margin, "max_detail_lost": served.rule.max_detail_lost,
        "max_side": served.rule.max_side, "confidence": served.rule.confidence}}
    per_file = []
    for container in ("as_shipped", "other_container"):
        rows = []
        for item in tqdm(images, desc=f"real-world ({container})", unit="image"):
            raw = item["raw"] if container == "as_shipped" else other_container(item["raw"], item["label"])
            result = served([raw])[0]
            rows.append({"file": item["file"], "label": item["label"], **result,
                         "limits": (served.rule.max_side, served.rule.max_detail_lost)})
        report[container] = figures(rows)
        per_file.append(rows)
    report["files"] = [{"file": a["file"], "label": a["label"], "verdict": a["verdict"], "other_container": b["verdict"],
                        "decided_by": a.get("decided_by"),
                        "prob_fake": round(a.get("prob_fake") or 0, 4), "detail_lost": a.get("detail_lost"),
                        "size": a.get("size"), "error": a.get("error")} for a, b in zip(*per_file)]
    results.mkdir(parents=True, exist_ok=True)
    (results / "realworld.json").write_text(json.dumps(report, indent=2) + "\n")
    (results / "realworld.md").write_text(markdown_table(report))
    reliability_plot(per_file[0], results / "realworld.png")
    for container in ("as_shipped", "other_container"):
        print(f"{container}: " + "; ".join(
            f"{label} wrong {f['wrong_rate']:.0%} unsure {f['unsure_rate']:.0%} right {f['coverage']:.0%}"
            for label, f in report[container].items() if isinstance(f, dict))
            + f"; decided {report[container]['decided']} ({report[container]['decided_right']} right)"
            + f"; ROC-AUC ai vs photo {report[container]['roc_auc_ai_vs_real_photo']}")
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="the real-world set (default: $FAKELENS_REALWORLD or ../shared/realworld-dev)")
    ap.add_argument("--repository", type=Path, default=REPOSITORY)
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    evaluate(realworld_dir(args.data), args.repository, args.results)


if __name__ == "__main__":
    main()
