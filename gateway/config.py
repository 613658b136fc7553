"""Gateway settings: defaults, overridden by FAKELENS_* environment variables, overridden by create_app(config)."""
from __future__ import annotations

import os
from pathlib import Path

from fakelens.images import MAX_PIXELS

ROOT = Path(__file__).resolve().parent.parent

DEFAULTS = {
    # gRPC, not HTTP: as fast here (README, How it scales), with per-call deadlines, a thread-safe client
    # and control over reconnect back-off.
    "TRITON_URL": "127.0.0.1:8001",
    "TRITON_TIMEOUT_S": 5.0,  # per model call; a slower model is reported missing, not waited for
    "MAX_CONTENT_LENGTH": 20 * 1024 * 1024,  # bytes per request (Flask answers 413 beyond)
    "MAX_PIXELS": MAX_PIXELS,  # width x height of one upload; bigger is a decompression bomb
    "MAX_BATCH_ITEMS": 32,
    "RESULTS_DIR": str(ROOT / "training" / "results"),  # benchmark.json and the training plots
    "API_KEYS_FILE": None,  # one key per line; when set, /v1/* needs "Authorization: Bearer <key>"
    "WATERMARKS": True,  # read generator watermarks from the pixels (off only to measure what reading them costs)
    # Scan records, reviews and banks (gateway/storage/). The default is a SQLite file in .data/, which
    # `make clean` keeps; compose and Kubernetes give a PostgreSQL URL.
    "DATABASE_URL": f"sqlite:///{ROOT / '.data' / 'fakelens.db'}",
    "RECORDS": True,  # record every scan and match uploads against the banks (off only to measure what they cost)
    "KEEP_IMAGES": False,  # keep each upload's bytes with its record, for the review page
    "IMAGE_RETENTION_DAYS": 30.0,  # kept images are dropped after this long
    "MAX_NOTE_CHARS": 2000,  # a review's note
}


def flag(value: str) -> bool:
    """An on/off variable: 0, false, no, off or empty are off."""
    return value.strip().lower() not in ("0", "false", "no", "off", "")


# Environment variable -> (setting, parser)
ENV = {
    "FAKELENS_TRITON_URL": ("TRITON_URL", str),
    "FAKELENS_TRITON_TIMEOUT_S": ("TRITON_TIMEOUT_S", float),
    "FAKELENS_MAX_UPLOAD_BYTES": ("MAX_CONTENT_LENGTH", int),
    "FAKELENS_MAX_PIXELS": ("MAX_PIXELS", int),
    "FAKELENS_MAX_BATCH_ITEMS": ("MAX_BATCH_ITEMS", int),
    "FAKELENS_RESULTS_DIR": ("RESULTS_DIR", str),
    "FAKELENS_API_KEYS_FILE": ("API_KEYS_FILE", str),
    "FAKELENS_WATERMARKS": ("WATERMARKS", flag),
    "FAKELENS_DATABASE_URL": ("DATABASE_URL", str),
    "FAKELENS_RECORDS": ("RECORDS", flag),
    "FAKELENS_KEEP_IMAGES": ("KEEP_IMAGES", flag),
    "FAKELENS_IMAGE_RETENTION_DAYS": ("IMAGE_RETENTION_DAYS", float),
}


def from_env(environ: os._Environ | dict | None = None) -> dict:
    """DEFAULTS overridden by the FAKELENS_* variables set in `environ` (default: os.environ)."""
    environ = os.environ if environ is None else environ
    cfg = dict(DEFAULTS)
    for var, (key, parse) in ENV.items():
        if environ.get(var):
            cfg[key] = parse(environ[var])
    return cfg
