"""Gateway settings: defaults, overridden by FAKELENS_* environment variables, overridden by create_app(config)."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DEFAULTS = {
    # gRPC. Measured batch-1 p50 here: HTTP and gRPC within noise of each other (baseline_cnn
    # 2.8-4.1 ms, resnet50 15.9-19.3 ms, both); gRPC wins on per-call deadlines, a thread-safe
    # client and control over reconnect back-off.
    "TRITON_URL": "127.0.0.1:8001",
    "TRITON_TIMEOUT_S": 5.0,  # per model call; a slower model is reported missing, not waited for
    "MAX_CONTENT_LENGTH": 20 * 1024 * 1024,  # bytes per request (Flask answers 413 beyond)
    "MAX_PIXELS": 50_000_000,  # width x height of one upload; bigger is a decompression bomb
    "MAX_BATCH_ITEMS": 32,
    "RESULTS_DIR": str(ROOT / "training" / "results"),  # benchmark.json and the training plots
    "API_KEYS_FILE": None,  # one key per line; when set, /v1/* needs "Authorization: Bearer <key>"
    "WATERMARKS": True,  # read generator watermarks from the pixels (off only to measure what reading them costs)
}

# Environment variable -> (setting, parser)
ENV = {
    "FAKELENS_TRITON_URL": ("TRITON_URL", str),
    "FAKELENS_TRITON_TIMEOUT_S": ("TRITON_TIMEOUT_S", float),
    "FAKELENS_MAX_UPLOAD_BYTES": ("MAX_CONTENT_LENGTH", int),
    "FAKELENS_MAX_PIXELS": ("MAX_PIXELS", int),
    "FAKELENS_MAX_BATCH_ITEMS": ("MAX_BATCH_ITEMS", int),
    "FAKELENS_RESULTS_DIR": ("RESULTS_DIR", str),
    "FAKELENS_API_KEYS_FILE": ("API_KEYS_FILE", str),
    "FAKELENS_WATERMARKS": ("WATERMARKS", lambda v: v.lower() not in ("0", "false", "no", "off")),
}


def from_env(environ: os._Environ | dict | None = None) -> dict:
    environ = os.environ if environ is None else environ
    cfg = dict(DEFAULTS)
    for var, (key, parse) in ENV.items():
        if environ.get(var):
            cfg[key] = parse(environ[var])
    return cfg
