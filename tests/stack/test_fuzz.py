"""Fuzzed uploads against the real stack: random and mutated files, odd multipart bodies; and the reviewer
endpoints (scan ids, queue filters, reviews, bank imports and entries) against a stack on PostgreSQL, which
refuses values SQLite takes. Zero 5xx.

A bounded number of cases for CI (FAKELENS_FUZZ_EXAMPLES, default 150 per test). Every request
sent is counted by status code; with FAKELENS_FUZZ_REPORT set, the counts are written there as
JSON (bench/fuzz.py reports them)."""
from __future__ import annotations

import csv
import functools
import io
import json
import os
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from bench.load import sample_test_images
from stack.launch import Limits
from tests.conftest import REVIEWER, Known, new_database, png_bytes

EXAMPLES = int(os.environ.get("FAKELENS_FUZZ_EXAMPLES", "150"))
SENT: dict[str, Counter] = {}  # test -> {status code: requests}
# The fuzz tests by the name they count their requests under (bench/fuzz.py divides its cases among them).
FUZZ_TESTS = ("predict", "batch", "raw_multipart", "metadata", "scan_lookups", "reviews", "bank_imports", "bank_entries")
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


def send(test: str, url: str, method: str = "POST", answer: tuple[str, ...] = ("verdict", "results"), **kwargs) -> None:
    """One case, paced under the rate limit; every answer is < 500 with a JSON body: a refusal with its reason,
    or a success holding one of `answer` (none: a CSV export)."""
    time.sleep(max(0.0, _last_sent[0] + INTERVAL - time.monotonic()))
    _last_sent[0] = time.monotonic()
    resp = requests.request(method, url, timeout=30, allow_redirects=False, **kwargs)  # a redirect is no answer
    SENT.setdefault(test, Counter())[resp.status_code] += 1
    assert resp.status_code < 500, resp.text[:300]
    if resp.ok and not answer:
        assert resp.headers["Content-Type"].startswith("text/csv")
        return
    body = resp.json()
    assert any(k in body for k in answer) if resp.ok else (body["error"] and body["message"])


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


TEXT = st.text(max_size=80)  # NUL, control characters, any script
HEX64 = st.text("0123456789abcdef", min_size=64, max_size=64)
LABEL = st.sampled_from(["REAL", "FAKE"])
WELL_FORMED_ROWS = st.lists(st.tuples(HEX64, LABEL, TEXT), min_size=1, max_size=5)  # any note
ANY_ROWS = st.lists(st.tuples(st.one_of(HEX64, TEXT), st.one_of(LABEL, TEXT), TEXT), max_size=5)
IMAGES = st.deferred(lambda: st.sampled_from(seeds()))
ANY_JSON = st.recursive(st.none() | st.booleans() | st.integers() | TEXT, lambda c: st.lists(c, max_size=3)
                        | st.dictionaries(TEXT, c, max_size=3), max_leaves=6)


@pytest.fixture(scope="module")
def reviewer(tmp_path_factory, postgres) -> tuple[str, dict, str]:
    """A stack with a reviewer key and its records on PostgreSQL: (URL, headers, a real scan id)."""
    known = Known(tmp_path_factory.mktemp("fuzz-reviewer"), new_database(postgres, "fuzzreviews"))
    scan_id = known.predict(seeds()[0])["scan_id"]
    yield known.url, {"Authorization": f"Bearer {REVIEWER}"}, scan_id
    known.stack.stop()


@FUZZ
@given(scan=TEXT, verdict=st.one_of(st.none(), st.just("UNSURE"), TEXT), reviewed=st.one_of(st.none(), TEXT),
       limit=st.one_of(st.none(), TEXT), before=st.one_of(st.none(), TEXT))
def test_fuzz_scan_lookups(reviewer, scan, verdict, reviewed, limit, before):
    url, headers, _ = reviewer
    send("scan_lookups", f"{url}/v1/scans/{quote(scan, safe='')}", "GET", ("scan_id",), headers=headers)
    params = {k: v for k, v in (("verdict", verdict), ("reviewed", reviewed), ("limit", limit), ("before", before))
              if v is not None}
    send("scan_lookups", f"{url}/v1/scans", "GET", ("scans",), headers=headers, params=params)


@FUZZ
@given(real=st.booleans(), scan=TEXT, body=st.one_of(
    st.fixed_dictionaries({"label": LABEL, "note": TEXT}),  # well formed, any note
    st.fixed_dictionaries({"label": st.one_of(LABEL, ANY_JSON), "note": ANY_JSON}),
    ANY_JSON, st.binary(max_size=200)))
def test_fuzz_reviews(reviewer, real, scan, body):
    url, headers, scan_id = reviewer
    payload = {"data": body} if isinstance(body, bytes) else {"json": body}
    send("reviews", f"{url}/v1/scans/{scan_id if real else quote(scan, safe='')}/review", answer=("review",),
         headers=headers, **payload)


@FUZZ
@given(bank=st.one_of(st.just("fuzz"), TEXT), header=st.booleans(), raw=st.one_of(st.none(), st.binary(max_size=300)),
       rows=st.one_of(WELL_FORMED_ROWS, ANY_ROWS))
def test_fuzz_bank_imports(reviewer, bank, header, raw, rows):
    url, headers, _ = reviewer
    if raw is None:
        out = io.StringIO()
        csv.writer(out).writerows(([("pdq", "label", "note")] if header else []) + rows)
        raw = out.getvalue().encode()
    path = f"{url}/v1/banks/{quote(bank, safe='')}"
    send("bank_imports", path + "/import", answer=("imported",), data=raw,
         headers={**headers, "Content-Type": "text/csv"})
    send("bank_imports", path + "/export", "GET", (), headers=headers)


@FUZZ
@given(bank=st.one_of(st.just("fuzz"), TEXT), raw=st.one_of(IMAGES, FILES), label=st.one_of(LABEL, TEXT),
       note=TEXT)
def test_fuzz_bank_entries(reviewer, bank, raw, label, note):
    url, headers, _ = reviewer
    send("bank_entries", f"{url}/v1/banks/{quote(bank, safe='')}/entries", answer=("entry",), headers=headers,
         files={"image": ("x", raw)}, data={"label": label, "note": note})


def test_fuzz_cases_reached_the_gateway():
    """Cases the front door turned away (429) would test nothing: every one must be answered."""
    assert set(SENT) == set(FUZZ_TESTS)
    assert not any(codes[429] for codes in SENT.values()), SENT


def test_gateway_healthy_after_fuzzing(gateway_url, reviewer):
    for url in (gateway_url, reviewer[0]):
        assert requests.get(url + "/healthz", timeout=5).status_code == 200
        assert requests.get(url + "/readyz", timeout=5).status_code == 200
    # The reviewer's stack still records and reads its database: no case left it failing as if it were away.
    url, headers, _ = reviewer
    scan_id = requests.post(url + "/v1/predict", files={"image": ("x.png", seeds()[1])}, headers=headers,
                            timeout=60).json()["scan_id"]
    assert requests.get(f"{url}/v1/scans/{scan_id}", headers=headers, timeout=10).status_code == 200
