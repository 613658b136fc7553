"""Python API for a fakelens service: `Client(url, api_key=None)`.

    client.predict(path_or_bytes)          -> the service's answer for one image
    client.predict_batch([...])            -> one answer per image, in order
    client.scan(paths)                     -> yields one record per file found below `paths`

With a reviewer's key (a line `KEY reviewer` in the service's keys file):

    client.scan_record(scan_id)            -> the stored record of a result, with its review
    client.review(scan_id, "FAKE", note)   -> {scan_id, review, entry}: copies of it now match
    client.export_bank("reviewed")         -> the bank as CSV text (pdq, label, note)
    client.import_bank("partner", csv)     -> {bank, imported, already_held}
"""
from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Union
from urllib.parse import quote

import requests

__all__ = ["Client", "ServiceError", "Unreachable", "EXTENSIONS", "DEFAULT_BATCH", "DEFAULT_CONCURRENCY", "RETRIES", "find_images"]

# What the gateway decodes (gateway/images.py FORMATS), by file name
EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".avif", ".heic", ".heif", ".gif", ".bmp", ".dib",
              ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".jp2", ".j2k", ".jpf", ".mpo"}
RETRY_STATUSES = {429, 502, 503, 504}
RETRIES = 8  # with back-off from 0.5 s doubling to 30 s: about 90 s before a request gives up
# Measured on 2 cores (bench/results/tuning/batch_path.json): 32 x 2 beat 16 x 4, 32 x 4, 8 x 8 and 32 x 8
DEFAULT_BATCH, DEFAULT_CONCURRENCY = 32, 2
Image = Union[str, os.PathLike, bytes]


class ServiceError(RuntimeError):
    """The service refused a request (4xx other than 429); `body` is its JSON answer."""

    def __init__(self, status: int, body: dict):
        super().__init__(f"{status} {body.get('error')}: {body.get('message')}")
        self.status, self.body = status, body


class Unreachable(RuntimeError):
    """The service could not be reached, or kept answering 429/503, after every retry."""


def find_images(paths: Iterable[Image]) -> tuple[list[Path], int]:
    """(image files below `paths`, recursively and sorted; how many other files were skipped)."""
    found, skipped = [], 0
    for root in map(Path, paths):
        files = sorted(p for p in root.rglob("*") if not p.is_dir()) if root.is_dir() else [root]
        for p in files:
            if p.suffix.lower() in EXTENSIONS:
                found.append(p)
            else:
                skipped += 1
    return found, skipped


class Client:
    def __init__(self, url: str = "http://127.0.0.1:8080", api_key: str | None = None, timeout: float = 120,
                 retries: int = RETRIES, backoff: float = 0.5):
        self.url = url.rstrip("/")
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._local = threading.local()  # one keep-alive session per thread
        self.retried = 0  # requests repeated after a 429/503 or a lost connection

    @property
    def session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def _post(self, path: str, files: list[tuple[str, tuple[str, bytes]]]) -> dict:
        return _json(self._request("POST", path, files=files))

    def _request(self, method: str, path: str, headers: dict | None = None, **kw) -> requests.Response:
        """A request with retries: 429/502/503/504 and lost connections back off (Retry-After when given).
        ServiceError for any other refusal. A request sent again: a prediction makes a second scan record, a
        review replaces itself, an import adds nothing the bank already holds."""
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                resp = self.session.request(method, self.url + path, headers={**self.headers, **(headers or {})},
                                            timeout=self.timeout, **kw)
            except requests.ConnectionError as exc:
                if attempt == self.retries:
                    raise Unreachable(f"{self.url}: {exc}") from None
                wait_s = delay
            else:
                if resp.status_code not in RETRY_STATUSES:
                    if not resp.ok:
                        raise ServiceError(resp.status_code, _json(resp))
                    return resp
                if attempt == self.retries:
                    raise Unreachable(f"{self.url}: still {resp.status_code} after {self.retries} retries")
                wait_s = _retry_after(resp) or delay
            self.retried += 1
            time.sleep(wait_s * random.uniform(1.0, 1.2))  # jitter: clients refused together do not return together
            delay = min(delay * 2, 30)
        raise AssertionError("unreachable")

    def predict(self, image: Image, filename: str | None = None) -> dict:
        return self._post("/v1/predict", [("image", _part(image, filename))])

    def predict_batch(self, images: list[Image]) -> list[dict]:
        return self._post("/v1/predict/batch", [("image", _part(img)) for img in images])["results"]

    def scan_record(self, scan_id: str) -> dict:
        return _json(self._request("GET", f"/v1/scans/{quote(scan_id, safe='')}"))

    def review(self, scan_id: str, label: str, note: str = "") -> dict:
        return _json(self._request("POST", f"/v1/scans/{quote(scan_id, safe='')}/review",
                                   json={"label": label, "note": note}))

    def export_bank(self, bank: str) -> str:
        return self._request("GET", f"/v1/banks/{quote(bank, safe='')}/export").text

    def import_bank(self, bank: str, csv_text: str | bytes) -> dict:
        body = csv_text.encode() if isinstance(csv_text, str) else csv_text
        return _json(self._request("POST", f"/v1/banks/{quote(bank, safe='')}/import", data=body,
                                   headers={"Content-Type": "text/csv"}))

    def scan(self, paths: Iterable[Image], batch_size: int = DEFAULT_BATCH,
             concurrency: int = DEFAULT_CONCURRENCY) -> Iterator[dict]:
        """One record per image file below `paths`, in completion order (see `record`)."""
        files, _ = find_images(paths)
        yield from self.scan_files(files, batch_size, concurrency)

    def scan_files(self, files: list[Path], batch_size: int = DEFAULT_BATCH,
                   concurrency: int = DEFAULT_CONCURRENCY) -> Iterator[dict]:
        batches = [files[i:i + batch_size] for i in range(0, len(files), batch_size)]
        with ThreadPoolExecutor(concurrency) as pool:
            pending = set()
            for batch in batches:
                pending.add(pool.submit(self._scan_batch, batch))
                if len(pending) >= 2 * concurrency:  # bounded memory: read files only shortly before sending
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        yield from fut.result()
            for fut in pending:
                yield from fut.result()

    def _scan_batch(self, batch: list[Path]) -> list[dict]:
        """Records for one batch. A file the service rejects is recorded with its error and the rest is sent again."""
        out, todo = [], []
        for path in batch:
            try:
                todo.append((path, path.read_bytes()))
            except OSError as exc:
                out.append(record(path, error=f"unreadable: {exc.strerror or exc}"))
        while todo:
            try:
                results = self._post("/v1/predict/batch", [("image", (p.name, raw)) for p, raw in todo])["results"]
            except ServiceError as exc:
                item = exc.body.get("item")
                if isinstance(item, int) and 0 <= item < len(todo):  # this one file was refused
                    path, _ = todo.pop(item)
                    out.append(record(path, error=f"{exc.body.get('error')}: {exc.body.get('message')}"))
                    continue
                if len(todo) > 1 and exc.status == 413:  # the request as a whole is too large: halve it
                    half = len(todo) // 2
                    return out + self._scan_batch([p for p, _ in todo[:half]]) + self._scan_batch([p for p, _ in todo[half:]])
                out += [record(p, error=f"{exc.body.get('error')}: {exc.body.get('message')}") for p, _ in todo]
                break
            out += [record(p, r) for (p, _), r in zip(todo, results)]
            break
        return out


def record(path: Path, result: dict | None = None, error: str | None = None) -> dict:
    """What `scan` writes for one file: flat fields first, the service's details after."""
    r = result or {}
    return {"path": str(path), "verdict": r.get("verdict"), "prob_fake": r.get("prob_fake"),
            "decided_by": r.get("decided_by"), "reason": r.get("reason"),
            "models": {m: a.get("prob_fake") for m, a in (r.get("models") or {}).items()},
            "provenance": r.get("provenance"), "scan_id": r.get("scan_id"), "match": r.get("match"), "error": error}


def _part(image: Image, filename: str | None = None) -> tuple[str, bytes]:
    if isinstance(image, bytes):
        return filename or "image", image
    path = Path(image)
    return filename or path.name, path.read_bytes()


def _json(resp: requests.Response) -> dict:
    try:
        return resp.json()
    except ValueError:
        return {"error": f"http_{resp.status_code}", "message": resp.text[:200]}


def _retry_after(resp: requests.Response) -> float | None:
    try:
        return max(float(resp.headers.get("Retry-After", "")), 0.0)
    except ValueError:
        return None
