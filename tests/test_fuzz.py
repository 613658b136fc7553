"""Fuzzed uploads against the real stack: random and mutated files, odd multipart bodies. Zero 5xx.

A bounded number of cases for CI (FAKELENS_FUZZ_EXAMPLES, default 150 per test)."""
from __future__ import annotations

import os

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.load import sample_test_images
from tests.conftest import png_bytes

EXAMPLES = int(os.environ.get("FAKELENS_FUZZ_EXAMPLES", "150"))
SEEDS = [raw for _, raw, _ in sample_test_images(4)] + [png_bytes((40, 30)), png_bytes((33, 31), mode="RGBA")]
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@st.composite
def mutated(draw) -> bytes:
    """A real image with bytes flipped, cut off or spliced in."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "cut":
            data = data[:pos]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


FILES = st.one_of(st.binary(max_size=4096), mutated())
NAMES = st.text(max_size=40)


def check(resp: requests.Response) -> None:
    assert resp.status_code < 500, resp.text[:300]
    body = resp.json()
    assert ("verdict" in body or "results" in body) if resp.ok else (body["error"] and body["message"])


@FUZZ
@given(raw=FILES, filename=NAMES, ctype=st.sampled_from(["image/jpeg", "application/octet-stream", "text/plain", ""]))
def test_fuzz_predict(gateway_url, raw, filename, ctype):
    check(requests.post(gateway_url + "/v1/predict", files={"image": (filename or "x", raw, ctype or None)},
                        timeout=30))


@FUZZ
@given(items=st.lists(st.tuples(st.sampled_from(["image", "image", "img", ""]), FILES), max_size=6))
def test_fuzz_batch(gateway_url, items):
    resp = requests.post(gateway_url + "/v1/predict/batch", files=[(f, ("f.bin", raw)) for f, raw in items],
                         timeout=30)
    check(resp)


@FUZZ
@given(body=st.binary(max_size=2048), boundary=st.sampled_from(["x", "----abc", ""]))
def test_fuzz_raw_multipart_bodies(gateway_url, body, boundary):
    resp = requests.post(gateway_url + "/v1/predict", data=body, timeout=30,
                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    check(resp)


def test_gateway_healthy_after_fuzzing(gateway_url):
    assert requests.get(gateway_url + "/healthz", timeout=5).status_code == 200
    assert requests.get(gateway_url + "/readyz", timeout=5).status_code == 200
