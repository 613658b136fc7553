"""Shared fixtures: real CIFAKE samples, free loopback ports, and the real embedded stack."""
from __future__ import annotations

import io
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stack.launch import Ports, Stack
from training.data import data_dir

ROOT = Path(__file__).resolve().parent.parent


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def cifake_test_images(count: int) -> list[tuple[str, bytes, int]]:
    """(member name, original JPEG bytes, label) from the official test archive, both classes, spread out."""
    with zipfile.ZipFile(data_dir() / "cifake-test.zip") as z:
        names = z.namelist()
        picks = [names[i] for i in np.linspace(0, len(names) - 1, count).astype(int)]
        return [(n, z.read(n), int(n.startswith("FAKE/"))) for n in picks]


def png_bytes(size=(64, 48), mode="RGB", color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def cifake_samples() -> list[tuple[str, bytes, int]]:
    return cifake_test_images(40)


def start_stack(tmp: Path, services=("triton", "gateway", "prometheus")) -> Stack:
    ports = Ports(*free_ports(5))
    return Stack(ports, run_dir=tmp, services=services, workers=2, threads=4).start()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """tritonserver + gunicorn + prometheus serving the committed models, shared by the read-only tests."""
    s = start_stack(tmp_path_factory.mktemp("stack"))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def gateway_url(stack) -> str:
    return f"http://127.0.0.1:{stack.ports.gateway}"
