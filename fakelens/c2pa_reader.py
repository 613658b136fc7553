"""C2PA manifests read in a child process, so that a read past its deadline is killed, not waited for.

A thread cannot be stopped: a manifest that makes c2pa-python spin would keep a thread (and a
core) busy after the request gave up on it, and enough of them would starve the gateway. Each
gunicorn worker keeps one reader process (`python -m fakelens.c2pa_reader`, started on first
use); a read that outlives its deadline kills it and is counted (fakelens_c2pa_abandoned_total),
and the next read starts a fresh one. Requests in one worker take turns on it; waiting for a
turn counts against the same deadline.

Protocol on the child's stdin/stdout: an 8-byte big-endian length, then that many bytes; the
child answers each file with the manifest store as JSON, or `null` when there is none.
"""
from __future__ import annotations

import io
import json
import os
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

HEADER = struct.Struct(">Q")
START_TIMEOUT_S = 30  # importing c2pa in a fresh interpreter; not part of any read's deadline


class ReadTimeout(Exception):
    """The manifest was not read within the deadline."""


def _read_exactly(stream, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise EOFError
    return data


def _serve() -> None:
    """The child: read files from stdin, answer each with its manifest store."""
    import c2pa  # only the child loads the C2PA library's reader
    context = c2pa.Context.from_dict({"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}})
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(HEADER.pack(0))  # ready
    stdout.flush()
    while True:
        try:
            raw = _read_exactly(stdin, HEADER.unpack(_read_exactly(stdin, HEADER.size))[0])
        except EOFError:  # the gateway worker is gone
            return
        try:
            with c2pa.Reader(None, io.BytesIO(raw), context=context) as reader:
                answer = reader.json().encode()
        except Exception:  # noqa: BLE001 - no manifest, or one that cannot be parsed: no evidence
            answer = b"null"
        stdout.write(HEADER.pack(len(answer)) + answer)
        stdout.flush()


class Reader:
    """One per gateway process; safe to share between request threads."""

    def __init__(self, on_abandon: Callable[[], None] = lambda: None) -> None:
        self.on_abandon = on_abandon  # the gateway counts them; the child never imports the metrics
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None

    def _receive_exactly(self, n: int, deadline: float) -> bytes:
        fd, chunks = self._proc.stdout.fileno(), []
        while n:
            if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise ReadTimeout
            chunk = os.read(fd, min(n, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _receive(self, deadline: float) -> bytes:
        return self._receive_exactly(HEADER.unpack(self._receive_exactly(HEADER.size, deadline))[0], deadline)

    def _start(self) -> None:
        self._proc = subprocess.Popen([sys.executable, "-m", "fakelens.c2pa_reader"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, bufsize=0, cwd=Path(__file__).resolve().parent.parent)
        self._receive(time.monotonic() + START_TIMEOUT_S)

    def _abandon(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def read(self, raw: bytes, timeout: float) -> dict | None:
        """The manifest store of `raw` (None when it has none); ReadTimeout when not read within `timeout` s."""
        deadline = time.monotonic() + timeout
        if not self._lock.acquire(timeout=timeout):
            raise ReadTimeout
        try:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
                deadline = time.monotonic() + timeout  # a fresh reader's start is not the file's fault
            self._proc.stdin.write(HEADER.pack(len(raw)) + raw)
            answer = json.loads(self._receive(deadline))
        except ReadTimeout:
            self._abandon()
            self.on_abandon()
            raise
        except (EOFError, OSError, ValueError):  # the reader died on this file: no evidence from it
            self._abandon()
            return None
        finally:
            self._lock.release()
        return answer if isinstance(answer, dict) else None


if __name__ == "__main__":
    _serve()
