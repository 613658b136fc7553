"""Optional API keys: with FAKELENS_API_KEYS_FILE set, /v1/* needs "Authorization: Bearer <key>".

Each line of the file is `KEY` (a client: predictions) or `KEY reviewer` (also reviews, the
review queue, the banks and the stored records). Health, readiness, metrics and the page stay
open (probes, Prometheus, people). Keys are compared in constant time and never logged or
stored: a record names a key by its id, the first 12 hex digits of its SHA-256.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from flask import current_app, g, request

from gateway.errors import ApiError

ROLES = ("client", "reviewer")


@dataclass(frozen=True)
class Key:
    secret: bytes
    role: str

    @property
    def id(self) -> str:
        return hashlib.sha256(self.secret).hexdigest()[:12]


def load_keys(path: str | None) -> list[Key]:
    """The keys in `path` (`KEY` or `KEY reviewer` a line; blank lines and # comments skipped); [] without a file."""
    if not path:
        return []
    keys = []
    for n, line in enumerate(Path(path).read_text().splitlines(), start=1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        role = words[1] if len(words) > 1 else "client"
        if len(words) > 2 or role not in ROLES:
            raise ValueError(f"FAKELENS_API_KEYS_FILE {path} line {n}: expected 'KEY' or 'KEY reviewer'")
        keys.append(Key(words[0].encode(), role))
    if not keys:
        raise ValueError(f"FAKELENS_API_KEYS_FILE {path} holds no key; unset it to run without keys")
    return keys


def require_key() -> None:
    """before_request of the /v1 blueprints: sets g.key (None when the service runs without keys)."""
    keys = current_app.extensions["api_keys"]
    g.key = None
    if not keys:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip().encode()
    # Compare with every key so the time taken does not tell which one nearly matched.
    found = [k for k in keys if hmac.compare_digest(given, k.secret)]
    if scheme.lower() != "bearer" or not found:
        raise ApiError(401, "unauthorized", "this service needs an API key: send 'Authorization: Bearer <key>'")
    g.key = found[0]


def require_reviewer() -> Key:
    """The reviewer's key, or 403 (401 came first from require_key when keys are required)."""
    if not current_app.extensions["api_keys"]:
        raise ApiError(403, "no_reviewer_keys", "reviews and stored records need a reviewer key, and this service has "
                       "none: write a line 'KEY reviewer' into a file, set FAKELENS_API_KEYS_FILE to it and restart")
    if g.key.role != "reviewer":
        raise ApiError(403, "not_a_reviewer", "this key may ask for predictions only; reviews and stored records need "
                       "a key marked 'reviewer' in FAKELENS_API_KEYS_FILE")
    return g.key
