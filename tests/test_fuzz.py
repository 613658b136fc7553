"""Fuzzed uploads against the real stack: random and mutated files, odd multipart bodies. Zero 5xx.

A bounded number of cases for CI (FAKELENS_FUZZ_EXAMPLES, default 150 per test). Every request
sent is counted by status code; with FAKELENS_FUZZ_REPORT set, the counts are written there as
JSON (bench/fuzz.py reports them)."""
from __future__ import annotations

import functools
import io
import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from bench.load import sample_test_images
from stack.launch import Limits
from tests.conftest import png_bytes

EXAMPLES = int(os.environ.get("FAKELENS_FUZZ_EXAMPLES", "150"))
SENT: dict[str, Counter] = {}  # test -> {status code: requests}
# Below the front door's rate limit (the stack reads the same settings), so every case reaches the gateway.
INTERVAL = 1 / (0.8 * Limits.from_env().rate)
_last_sent = [0.0]
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@functools.cache
def seeds() -> list[bytes]:
    """Real images to mutate, read on first use rather than when the module is collected."""
    return [raw for _, raw, _ in sample_test_images(4)] + [png_bytes((40, 30)), png_bytes((33, 31), mode="RGBA")]


@st.composite
def mutated(draw) -> bytes:
    """A real image with bytes flipped, cut off or spliced in."""
    data = bytearray(draw(st.sampled_from(seeds())))
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


META_KEYS = ["parameters", "prompt", "workflow", "invokeai_metadata", "sd-metadata", "Software", "Description",
             "Comment", "XML:com.adobe.xmp"]
# Fragments of what provenance.py looks for, repeated and nested to stress its bounds
FRAGMENTS = ["Steps: 1, Sampler: x", '"class_type"', '{"nodes": [', "Job ID: ", "NovelAI", "<x:xmpmeta>",
             "DigitalSourceType", "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia", "[{", "c2pa",
             "jumb", "\x00"]


@st.composite
def metadata_text(draw) -> str:
    if draw(st.booleans()):
        return draw(st.text(max_size=2000))
    return "".join(draw(st.sampled_from(FRAGMENTS)) * draw(st.integers(1, 3000)) for _ in range(draw(st.integers(1, 4))))


@st.composite
def with_metadata(draw) -> bytes:
    """A small image whose metadata (PNG text, XMP, EXIF UserComment and Software) is fuzzed."""
    img = Image.new("RGB", (draw(st.integers(1, 80)), draw(st.integers(1, 80))), (120, 30, 200))
    buf = io.BytesIO()
    fmt = draw(st.sampled_from(["PNG", "JPEG", "WEBP"]))
    exif = Image.Exif()
    exif[0x0131] = draw(metadata_text())[:1000]
    exif.get_ifd(0x8769)[0x9286] = draw(st.sampled_from([b"UNICODE\0", b"ASCII\0\0\0", b""])) + \
        draw(metadata_text()).encode("utf-8", "replace")[:30000]
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        for _ in range(draw(st.integers(0, 4))):
            info.add_itxt(draw(st.sampled_from(META_KEYS)), draw(metadata_text()), zip=draw(st.booleans()))
        img.save(buf, "PNG", pnginfo=info, exif=exif.tobytes())
    else:
        img.save(buf, fmt, exif=exif.tobytes(), xmp=draw(metadata_text()).encode("utf-8", "replace")[:60000])
    return buf.getvalue()


FILES = st.one_of(st.binary(max_size=4096), mutated())
NAMES = st.text(max_size=40)


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if os.environ.get("FAKELENS_FUZZ_REPORT"):
        Path(os.environ["FAKELENS_FUZZ_REPORT"]).write_text(json.dumps(SENT, indent=2) + "\n")


def send(test: str, url: str, **kwargs) -> None:
    """POST one case, paced under the rate limit; every answer is < 500 with a JSON body."""
    time.sleep(max(0.0, _last_sent[0] + INTERVAL - time.monotonic()))
    _last_sent[0] = time.monotonic()
    resp = requests.post(url, timeout=30, **kwargs)
    SENT.setdefault(test, Counter())[resp.status_code] += 1
    assert resp.status_code < 500, resp.text[:300]
    body = resp.json()
    assert ("verdict" in body or "results" in body) if resp.ok else (body["error"] and body["message"])


@FUZZ
@given(raw=FILES, filename=NAMES, ctype=st.sampled_from(["image/jpeg", "application/octet-stream", "text/plain", ""]))
def test_fuzz_predict(gateway_url, raw, filename, ctype):
    send("predict", gateway_url + "/v1/predict", files={"image": (filename or "x", raw, ctype or None)})


@FUZZ
@given(items=st.lists(st.tuples(st.sampled_from(["image", "image", "img", ""]), FILES), max_size=6))
def test_fuzz_batch(gateway_url, items):
    send("batch", gateway_url + "/v1/predict/batch", files=[(f, ("f.bin", raw)) for f, raw in items])


@FUZZ
@given(body=st.binary(max_size=2048), boundary=st.sampled_from(["x", "----abc", ""]))
def test_fuzz_raw_multipart_bodies(gateway_url, body, boundary):
    send("raw_multipart", gateway_url + "/v1/predict", data=body,
         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})


@FUZZ
@given(raw=st.one_of(with_metadata(), with_metadata().map(lambda b: b[: len(b) // 2] + b"c2pajumb" + b[len(b) // 2:])))
def test_fuzz_metadata(gateway_url, raw):
    send("metadata", gateway_url + "/v1/predict", files={"image": ("meta.img", raw)})


def test_fuzz_cases_reached_the_gateway():
    """Cases the front door turned away (429) would test nothing: every one must be answered."""
    assert set(SENT) == {"predict", "batch", "raw_multipart", "metadata"}
    assert not any(codes[429] for codes in SENT.values()), SENT


def test_gateway_healthy_after_fuzzing(gateway_url):
    assert requests.get(gateway_url + "/healthz", timeout=5).status_code == 200
    assert requests.get(gateway_url + "/readyz", timeout=5).status_code == 200
