"""Fit the verdict rule's numbers and write them into the model repository.

- `unsure_margin`: on the validation split, the widest band around the threshold that
  holds at most MAX_UNSURE of the images; inside it the ensemble is too close to call.
- `max_side`: the largest enlargement of a 32x32 image that was measured (4x, as in the
  perturbation battery); a bigger upload is outside the models' domain whatever it shows.
- `max_detail_lost`: the most detail a 32x32 view may discard and still count as an
  enlarged 32x32 image: the largest value measured on validation images upscaled the ways
  people upscale (1.25x to 4x, bilinear, bicubic, Lanczos), times a small allowance.
- `confidence`: the share of decided verdicts that were right, measured on the test split
  as uploaded (32x32, "native") and on test images enlarged as above ("resized"). It is what
  the gateway reports as the confidence of a decided verdict, not a model's probability.

The size limit is what keeps the models off real-world uploads: there their scores are a coin
flip, and smooth photos, art and renders lose as little detail in a 32x32 view as an enlarged
CIFAKE image does (README, What it can judge). The dev set reports how the rule does; it fits nothing.

Every backend hands the result to the judge with the models' answers (fakelens.contract).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from PIL import Image

from fakelens.contract import read_config, read_repository, rule_of
from fakelens.images import SIZE, detail_lost, model_view
from fakelens.provenance import NOTHING
from fakelens.verdict import NATIVE, RESIZED, Rule

THRESHOLD = 0.5
MAX_UNSURE = 0.03  # of validation images; the bar on the test split is 5%
FACTORS = (1.25, 1.5, 2, 3, 4)
UPSCALES = [(f, r) for f in FACTORS for r in (Image.BILINEAR, Image.BICUBIC, Image.LANCZOS)]
MAX_SIDE = round(SIZE * max(FACTORS))
DETAIL_ALLOWANCE = 1.1
CONFIGS = ("config.pbtxt", "configs/cpu.pbtxt")


def fit_margin(p_fake: np.ndarray, threshold: float = THRESHOLD, max_unsure: float = MAX_UNSURE) -> float:
    """The widest margin (rounded down to 0.005) that leaves at most `max_unsure` of p_fake inside it."""
    distance = np.sort(np.abs(p_fake - threshold))
    edge = distance[int(max_unsure * len(distance))]  # at most that many images lie strictly closer
    return round(float(np.floor(edge / 0.005) * 0.005), 3)


def enlarged(x: np.ndarray, y: np.ndarray, n: int = 400, seed: int = 0) -> dict[str, np.ndarray]:
    """`n` of the images under every upscale in UPSCALES, as the gateway sees them:
    {"pixels": uint8 [m, 32, 32, 3], "detail_lost": [m], "side": [m], "y": [m]}."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(x), min(n, len(x)), replace=False)
    out = {"pixels": [], "detail_lost": [], "side": [], "y": []}
    for img, label in zip(x[pick], y[pick]):
        pil = Image.fromarray(img)
        for factor, resample in UPSCALES:
            big = pil.resize((round(SIZE * factor),) * 2, resample)
            out["pixels"].append(model_view(big))
            out["detail_lost"].append(detail_lost(big))
            out["side"].append(big.width)
            out["y"].append(label)
    return {k: np.array(v) for k, v in out.items()}


def fit_max_detail_lost(val_x: np.ndarray, val_y: np.ndarray) -> float:
    return round(float(enlarged(val_x, val_y)["detail_lost"].max()) * DETAIL_ALLOWANCE, 2)


def verdicts(rule: Rule, p_models: dict[str, np.ndarray], sides: np.ndarray, details: np.ndarray) -> np.ndarray:
    """The rule's verdict for each image (no provenance), from each model's P(FAKE)."""
    return np.array([rule.decide(rule.read({m: float(p[i]) for m, p in p_models.items()}, (int(side), int(side)),
                                           float(d)), NOTHING).verdict for i, (side, d) in enumerate(zip(sides, details))])


def decided(verdict: np.ndarray, y: np.ndarray) -> dict:
    """{"images", "unsure_rate", "decided_accuracy"} of verdicts against labels (1 = FAKE)."""
    sure = verdict != "UNSURE"
    right = verdict[sure] == np.where(y[sure] == 1, "FAKE", "REAL")
    return {"images": int(len(y)), "unsure_rate": round(float(1 - sure.mean()), 4),
            "decided_accuracy": round(float(right.mean()), 4) if sure.any() else None}


def write(repository: Path, weights: dict[str, float], margin: float, max_detail: float,
          confidence: dict[str, float]) -> Rule:
    """Write the rule into every model's config.pbtxt and configs/cpu.pbtxt `parameters`."""
    shared = json.dumps({"threshold": THRESHOLD, "unsure_margin": margin, "max_detail_lost": max_detail,
                         "max_side": MAX_SIDE, "confidence": {k: confidence[k] for k in (NATIVE, RESIZED)}},
                        sort_keys=True)
    for name, weight in weights.items():
        for rel in CONFIGS:
            path = repository / name / rel
            cfg = read_config(path)
            cfg.parameters["ensemble_weight"].string_value = f"{weight:g}"
            cfg.parameters["verdict_rule"].string_value = shared
            path.write_text(text_format.MessageToString(cfg))
    return load(repository)


def load(repository: Path) -> Rule:
    """The rule as every backend will hand it over, from the configs in `repository`."""
    return rule_of({m: c.parameters for m, c in read_repository(repository).items()})


