"""Faults on a stack of its own: a model unloaded, Triton stopped and started again.

Its repository holds two of the three models, so these tests also show that the gateway
serves the models Triton's repository holds, from no list of its own.
"""
from __future__ import annotations

import time

import pytest
import requests
import tritonclient.http as httpclient

from fakelens.triton import CHANNEL_ARGS
from tests.conftest import ROOT, start_stack

SERVED = ("baseline_cnn", "tuned_cnn")


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    for name in SERVED:
        (tmp / "repository" / name).parent.mkdir(exist_ok=True)
        (tmp / "repository" / name).symlink_to(ROOT / "model_repository" / name)
    s = start_stack(tmp, services=("triton", "gateway"), repository=tmp / "repository")
    yield s
    s.stop()


def predict(stack, raw: bytes) -> requests.Response:
    return requests.post(f"http://127.0.0.1:{stack.ports.gateway}/v1/predict",
                         files={"image": ("x.jpg", raw)}, timeout=30)


def test_unloaded_model_gives_a_degraded_answer(faulty, cifake_samples):
    raw = cifake_samples[0][1]
    triton = httpclient.InferenceServerClient(f"127.0.0.1:{faulty.ports.triton_http}")
    assert set(predict(faulty, raw).json()["models"]) == set(SERVED)
    triton.unload_model("tuned_cnn")
    try:
        resp = predict(faulty, raw)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["degraded"] is True and body["missing"] == ["tuned_cnn"]
        assert set(body["models"]) == {"baseline_cnn"}
        ready = requests.get(f"http://127.0.0.1:{faulty.ports.gateway}/readyz", timeout=5)
        assert ready.status_code == 503 and "tuned_cnn" in ready.json()["reason"]
    finally:
        triton.load_model("tuned_cnn")
    body = predict(faulty, raw).json()
    assert body["degraded"] is False and set(body["models"]) == set(SERVED)


def test_triton_down_is_a_quick_503_and_the_gateway_recovers(faulty, cifake_samples):
    raw = cifake_samples[1][1]
    faulty.stop_service("triton")

    start = time.perf_counter()
    resp = predict(faulty, raw)
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"] == "triton_unavailable"
    assert time.perf_counter() - start < 6  # the gateway's timeout is 5 s; unreachable fails faster
    assert requests.get(f"http://127.0.0.1:{faulty.ports.gateway}/healthz", timeout=5).status_code == 200

    faulty.start_service("triton")  # same ports; the gateway is not restarted
    deadline = time.time() + 20
    while time.time() < deadline:
        resp = predict(faulty, raw)
        if resp.status_code == 200:
            break
        time.sleep(0.5)
    assert resp.status_code == 200 and not resp.json()["degraded"], resp.text


def test_killed_gunicorn_worker_loses_only_its_in_flight_requests(faulty, cifake_samples):
    import os
    import signal
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    gateway = next(s for s in faulty.started if s.name == "gateway")
    workers = subprocess.run(["pgrep", "-P", str(gateway.proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2, workers
    raws = [raw for _, raw, _ in cifake_samples]
    # After the Triton restart above, each worker reconnects on its own: wait until both answer.
    deadline, streak = time.time() + 30, 0
    while streak < 10 and time.time() < deadline:
        streak = streak + 1 if predict(faulty, raws[0]).status_code == 200 else 0
    assert streak >= 10, "the gateway did not recover from the Triton restart"
    # Those may all have reached one worker; the other reconnects within its gRPC back-off cap.
    time.sleep(2 * dict(CHANNEL_ARGS)["grpc.max_reconnect_backoff_ms"] / 1000)

    def one(i: int) -> int:
        try:
            return predict(faulty, raws[i % len(raws)]).status_code
        # Killed before it answered, or between its headers and its body (gunicorn writes them separately).
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
            return 0

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(one, i) for i in range(120)]
        time.sleep(0.5)
        os.kill(int(workers[0]), signal.SIGKILL)
        codes = [f.result() for f in futures]
    failed = [c for c in codes if c != 200]
    assert len(failed) <= 4, f"status codes {failed}: more than the 4 requests the client had in flight"
    assert all(predict(faulty, raws[0]).status_code == 200 for _ in range(10))  # gunicorn replaced the worker


def test_with_the_gateway_stopped_nginx_answers_503_json_saying_when_to_retry(faulty, cifake_samples):
    faulty.stop_service("gateway")  # nginx stays: its upstream socket is gone
    try:
        resp = predict(faulty, cifake_samples[0][1])
        assert resp.status_code == 503 and resp.json()["error"] == "gateway_unavailable", resp.text
        assert resp.headers["Retry-After"] == "5" and resp.json()["retry_after"] == 5
    finally:
        faulty.start_service("gateway")
    assert predict(faulty, cifake_samples[0][1]).status_code == 200
