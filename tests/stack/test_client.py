"""fakelens-client (client/) against the real stack: scans, interruptions, rate limits, bad files, a clean install."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import venv
from pathlib import Path

import pytest
import requests

from bench.load import sample_test_images
from tests.conftest import CLIENT_CLI, CLIENT_ENV, ROOT, cli

sys.path.insert(0, str(ROOT / "client"))
from fakelens_client import Client  # noqa: E402


def write_folder(folder: Path, count: int) -> dict[str, int]:
    """CIFAKE test images in two nested folders; {path: label}."""
    labels = {}
    for i, (name, raw, label) in enumerate(sample_test_images(count)):
        path = folder / ("a" if i % 2 else "b/c") / name.replace("/", "_")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
        labels[str(path)] = label
    return labels


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_scan_records_every_file_as_single_uploads_answer(gateway_url, tmp_path):
    labels = write_folder(tmp_path / "images", 120)
    (tmp_path / "images" / "notes.txt").write_text("not an image, skipped")
    (tmp_path / "images" / "fake.jpg").write_text("not an image either, but named like one")
    (tmp_path / "images" / "gone.png").symlink_to(tmp_path / "missing.png")
    out = tmp_path / "out.jsonl"
    r = cli("scan", str(tmp_path / "images"), "--url", gateway_url, "--out", str(out))
    assert r.returncode == 0, r.stderr
    recs = {rec["path"]: rec for rec in records(out)}
    assert len(recs) == len(records(out)) == 122
    assert "1 other files skipped" in r.stderr and "error 2" in r.stderr
    assert recs[str(tmp_path / "images" / "fake.jpg")]["error"].startswith("bad_image")
    assert recs[str(tmp_path / "images" / "gone.png")]["error"].startswith("unreadable")
    client = Client(gateway_url)
    for path in list(labels)[::12]:
        single = client.predict(path)
        assert recs[path]["verdict"] == single["verdict"]
        assert recs[path]["prob_fake"] == pytest.approx(single["prob_fake"], abs=1e-5)
    decided = [(recs[p]["verdict"] == "FAKE") == bool(y) for p, y in labels.items() if recs[p]["verdict"] != "UNSURE"]
    assert sum(decided) / len(decided) >= 0.95


def test_interrupted_scan_resumes_with_every_file_once(gateway_url, tmp_path):
    labels = write_folder(tmp_path / "images", 400)
    out = tmp_path / "out.jsonl"
    args = ["scan", str(tmp_path / "images"), "--url", gateway_url, "--out", str(out), "--batch-size", "4",
            "--concurrency", "2"]
    proc = subprocess.Popen([*CLIENT_CLI, *args], env=CLIENT_ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while (not out.exists() or len(out.read_bytes().splitlines()) < 100) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # mid-way, mid-write perhaps
    proc.wait()
    first = len(out.read_bytes().splitlines())
    assert 100 <= first < 400, first
    r = cli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    paths = [rec["path"] for rec in records(out)]
    assert sorted(paths) == sorted(labels)  # every file exactly once
    assert all(rec["verdict"] for rec in records(out))


def test_scan_backs_off_when_rate_limited(gateway_url, tmp_path):
    """Another program on the same address floods the service for 3 s as the scan starts: nginx answers
    429 with Retry-After, the client waits and retries, and every file still gets its answer."""
    write_folder(tmp_path / "images", 100)
    out = tmp_path / "out.jsonl"
    stop = time.time() + 3

    def flood():
        with requests.Session() as s:
            while time.time() < stop:
                s.post(gateway_url + "/v1/predict", files={"image": ("x.png", b"junk")}, timeout=10)

    threads = [threading.Thread(target=flood) for _ in range(8)]
    for th in threads:
        th.start()
    r = cli("scan", str(tmp_path / "images"), "--url", gateway_url, "--out", str(out), "--batch-size", "1",
            "--concurrency", "4")
    for th in threads:
        th.join()
    assert r.returncode == 0, r.stderr
    retried = int(r.stderr.rsplit(" requests retried", 1)[0].rsplit(" ", 1)[1])
    assert retried > 0, r.stderr
    assert len(records(out)) == 100 and not [rec for rec in records(out) if rec["error"]]


def test_unreachable_service_fails_clearly(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG")
    start = time.monotonic()
    r = cli("check", str(tmp_path / "a.png"), "--url", "http://127.0.0.1:9", "--retries", "1")
    assert r.returncode == 2 and "unreachable" in r.stderr
    assert time.monotonic() - start < 30  # one retry, not the default's 90 s of back-off


def test_check_prints_one_line_per_file(gateway_url, tmp_path):
    [(name, raw, _)] = sample_test_images(1)
    (tmp_path / "x.jpg").write_bytes(raw)
    r = cli("check", str(tmp_path / "x.jpg"), "--url", gateway_url, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["verdict"] in ("REAL", "FAKE", "UNSURE")
    assert requests.get(gateway_url + "/healthz", timeout=5).ok


def test_client_installs_in_a_clean_venv_without_torch(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT / "client")],
                   check=True, cwd=tmp_path)
    assert subprocess.run([str(py), "-c", "import torch"], capture_output=True).returncode != 0
    assert subprocess.run([str(py), "-c", "import numpy"], capture_output=True).returncode != 0
    r = subprocess.run([str(env_dir / "bin" / "fakelens"), "scan", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--resume" in r.stdout
