"""Shared fixtures: real CIFAKE samples, free loopback ports, and the real embedded stack."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from bench.load import sample_test_images
from stack.launch import Ports, Stack, free_ports

ROOT = Path(__file__).resolve().parent.parent


def png_bytes(size=(64, 48), mode="RGB", color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def cifake_samples() -> list[tuple[str, bytes, int]]:
    return sample_test_images(40)


def start_stack(tmp: Path, services=("triton", "gateway", "prometheus"), repository: Path = ROOT / "model_repository") -> Stack:
    ports = Ports(*free_ports(5))
    return Stack(ports, run_dir=tmp, repository=repository, services=services, workers=2, threads=4).start()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """tritonserver + gunicorn + prometheus serving the committed models, shared by the read-only tests."""
    s = start_stack(tmp_path_factory.mktemp("stack"))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def gateway_url(stack) -> str:
    return f"http://127.0.0.1:{stack.ports.gateway}"
