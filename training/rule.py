"""Fit the verdict rule's numbers and write them into the model repository.

- `unsure_margin`: on the validation split, the widest band around the threshold that
  holds at most MAX_UNSURE of the images; inside it the ensemble is too close to call.
- `max_detail_lost`: the most detail a 32x32 view may discard and still count as the
  models' domain: the largest value measured on validation images upscaled the ways
  people upscale (1.5x to 8x, bilinear, bicubic, Lanczos), times a small allowance.
  Real-world images carry far more (dev set medians 15-17 grey levels, against at most
  ~7.6 for those upscales); the dev set is used to report how this choice does, not to fit it.

The gateway reads the result from Triton (gateway/verdict.py `Rule.from_parameters`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from PIL import Image
from tritonclient.grpc import model_config_pb2 as mc

from gateway.images import detail_lost
from gateway.verdict import Rule

THRESHOLD = 0.5
MAX_UNSURE = 0.03  # of validation images; the bar on the test split is 5%
UPSCALES = [(f, r) for f in (1.5, 2, 3, 4, 8) for r in (Image.BILINEAR, Image.BICUBIC, Image.LANCZOS)]
DETAIL_ALLOWANCE = 1.1
CONFIGS = ("config.pbtxt", "configs/cpu.pbtxt")


def fit_margin(p_fake: np.ndarray, threshold: float = THRESHOLD, max_unsure: float = MAX_UNSURE) -> float:
    """The widest margin (rounded down to 0.005) that leaves at most `max_unsure` of p_fake inside it."""
    distance = np.sort(np.abs(p_fake - threshold))
    edge = distance[int(max_unsure * len(distance))]  # at most that many images lie strictly closer
    return round(float(np.floor(edge / 0.005) * 0.005), 3)


def upscale_detail(x: np.ndarray, n: int = 400, seed: int = 0) -> np.ndarray:
    """detail_lost of `n` validation images under every upscale in UPSCALES, as the gateway measures it."""
    rng = np.random.default_rng(seed)
    out = []
    for img in x[rng.choice(len(x), min(n, len(x)), replace=False)]:
        pil = Image.fromarray(img)
        for factor, resample in UPSCALES:
            side = round(32 * factor)
            out.append(detail_lost(pil.resize((side, side), resample)))
    return np.array(out)


def fit_max_detail_lost(val_x: np.ndarray) -> float:
    return round(float(upscale_detail(val_x).max()) * DETAIL_ALLOWANCE, 2)


def write(repository: Path, weights: dict[str, float], margin: float, max_detail: float) -> Rule:
    """Write the rule into every model's config.pbtxt and configs/cpu.pbtxt `parameters`."""
    shared = json.dumps({"threshold": THRESHOLD, "unsure_margin": margin, "max_detail_lost": max_detail},
                        sort_keys=True)
    for name, weight in weights.items():
        for rel in CONFIGS:
            path = repository / name / rel
            cfg = text_format.Parse(path.read_text(), mc.ModelConfig())
            cfg.parameters["ensemble_weight"].string_value = f"{weight:g}"
            cfg.parameters["verdict_rule"].string_value = shared
            path.write_text(text_format.MessageToString(cfg))
    return load(repository)


def load(repository: Path) -> Rule:
    """The rule as the gateway will read it, from the configs in `repository`."""
    params = {}
    for path in sorted(repository.glob("*/config.pbtxt")):
        cfg = text_format.Parse(path.read_text(), mc.ModelConfig())
        params[cfg.name] = {k: v.string_value for k, v in cfg.parameters.items()}
    return Rule.from_parameters(params)


