"""The two ways of serving we compare the stack with, both in one Python process:

- the ceiling: the three TorchScript models called directly on decoded pixels, at the best batch size;
- the seed's way: an HTTP server that calls the three models one after another for every upload.

Both decode uploads exactly as the gateway does (fakelens.images) and call the models through the core's
in-process backend (fakelens.torchscript).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from fakelens.images import decode
from fakelens.torchscript import TorchScript


def load_models(repository: Path) -> TorchScript:
    """Every model of the repository, as Triton would load it."""
    return TorchScript(repository, batch_size=1 << 30)  # the whole batch in one call: this is the ceiling


def classify(models: TorchScript, raws: list[bytes]) -> np.ndarray:
    """Decode a batch of uploads and run every model on it: [len(models), N] P(FAKE)."""
    answers = models.fan_out(np.stack([decode(r).pixels for r in raws])).answers
    return np.stack([a.p_fake for a in answers.values()])


def _rate(models: TorchScript, images: list[bytes], bs: int, seconds: float) -> float:
    for _ in range(3):  # warm-up: TorchScript's profiling executor optimises each new shape on its first calls
        classify(models, images[:bs])
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        classify(models, [images[(done + k) % len(images)] for k in range(bs)])
        done += bs
    return done / (time.perf_counter() - start)


def ceiling(models: TorchScript, images: list[bytes], batch_sizes=(1, 8, 32, 64, 128), seconds: float = 8) -> dict:
    """Images/s of decode + three models per batch size, and the batch-1 latency of all three in a row."""
    rates = {bs: _rate(models, images, bs, seconds) for bs in batch_sizes}
    _rate(models, images, 1, 0)  # warm batch 1 again after the other shapes
    lat = []
    for raw in images[:300]:
        start = time.perf_counter()
        classify(models, [raw])
        lat.append((time.perf_counter() - start) * 1000)
    best = max(rates, key=rates.get)
    return {"images_per_s_by_batch": {str(k): round(v, 1) for k, v in rates.items()}, "best_batch": best,
            "rps": round(rates[best], 1), "batch1_p50_ms": round(float(np.percentile(lat, 50)), 2),
            "batch1_p95_ms": round(float(np.percentile(lat, 95)), 2)}


def seed_app(models: TorchScript):
    """The seed's serving: one process, per request the three models one after another at batch 1."""
    from flask import Flask, jsonify, request

    app = Flask("seed")

    @app.post("/predict")
    def predict():
        p = classify(models, [request.files["image"].read()])[:, 0]
        return jsonify({name: float(v) for name, v in zip(models.contracts, p)})

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description="Serve the models the seed's way (used by bench.serving).")
    ap.add_argument("--repository", type=Path, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from werkzeug.serving import run_simple

    app = seed_app(load_models(args.repository))
    run_simple("127.0.0.1", args.port, app, threaded=True)


if __name__ == "__main__":
    main()
