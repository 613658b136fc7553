"""Optional API keys: with FAKELENS_API_KEYS_FILE set, /v1/* needs "Authorization: Bearer <key>".

Health, readiness, metrics and the page stay open (probes, Prometheus, people). Keys are
compared in constant time and never logged.
"""
from __future__ import annotations

import hmac
from pathlib import Path

from flask import current_app, request

from gateway.errors import ApiError


def load_keys(path: str | None) -> list[bytes]:
    """The keys in `path` (one a line; blank lines and # comments skipped); [] when no file is configured."""
    if not path:
        return []
    keys = [line.strip().encode() for line in Path(path).read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise ValueError(f"FAKELENS_API_KEYS_FILE {path} holds no key; unset it to run without keys")
    return keys


def require_key() -> None:
    """before_request of the /v1 blueprint."""
    keys = current_app.extensions["api_keys"]
    if not keys:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip().encode()
    # Compare with every key so the time taken does not tell which one nearly matched.
    if scheme.lower() != "bearer" or not sum(hmac.compare_digest(given, k) for k in keys):
        raise ApiError(401, "unauthorized", "this service needs an API key: send 'Authorization: Bearer <key>'")
