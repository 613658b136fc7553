"""The gateway with a test client and no Triton behind it: input checks, errors, pages.

These run without torch (see test_compose.py, which runs them in a venv built
from gateway/requirements.txt alone).
"""
from __future__ import annotations

import io
import json
import socket
import time

import pytest
from PIL import Image
from prometheus_client import REGISTRY
from tritonclient.utils import InferenceServerException

from gateway.app import create_app
from tests.fakes import RULE, FakeTriton, config


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def png(size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def client(tmp_path):
    (tmp_path / "benchmark.json").write_text(json.dumps({"models": {"resnet50": {"f1": 0.99, "precision": 0.98},
                                                                    "ensemble": {"f1": 0.995}}}))
    app = create_app({"TRITON_URL": f"127.0.0.1:{closed_port()}", "TRITON_TIMEOUT_S": 2.0,
                      "RESULTS_DIR": str(tmp_path), "MAX_CONTENT_LENGTH": 1_000_000, "MAX_BATCH_ITEMS": 4,
                      "MAX_PIXELS": 10_000_000, "DATABASE_URL": f"sqlite:///{tmp_path / 'fakelens.db'}"})
    return app.test_client()


def upload(client, *files, url="/v1/predict"):
    data = {"image": [(io.BytesIO(raw), name) for name, raw in files]}
    return client.post(url, data=data, content_type="multipart/form-data")


BAD_INPUTS = {
    "no multipart body": (lambda c: c.post("/v1/predict"), 400, "bad_request"),
    "empty body": (lambda c: c.post("/v1/predict", data=b"", content_type="multipart/form-data; boundary=x"), 400,
                   "missing_image"),
    "wrong field": (lambda c: c.post("/v1/predict", data={"file": (io.BytesIO(png()), "a.png")},
                                     content_type="multipart/form-data"), 400, "missing_image"),
    "empty file": (lambda c: upload(c, ("a.png", b"")), 400, "bad_image"),
    "not an image": (lambda c: upload(c, ("a.txt", b"just some text")), 400, "bad_image"),
    "truncated image": (lambda c: upload(c, ("a.png", png((300, 300))[:300])), 400, "bad_image"),
    "decompression bomb": (lambda c: upload(c, ("bomb.png", png((5000, 5000)))), 413, "too_many_pixels"),
    "upload too large": (lambda c: upload(c, ("big.bin", b"\0" * 2_000_000)), 413, "too_large"),
    "two images on /predict": (lambda c: upload(c, ("a.png", png()), ("b.png", png())), 400, "too_many_images"),
    "too many batch items": (lambda c: upload(c, *[(f"{i}.png", png()) for i in range(5)], url="/v1/predict/batch"),
                             400, "too_many_images"),
    "one bad item in a batch": (lambda c: upload(c, ("a.png", png()), ("b.txt", b"nope"), url="/v1/predict/batch"),
                                400, "bad_image"),
    "GET on predict": (lambda c: c.get("/v1/predict"), 405, "method_not_allowed"),
    "unknown path": (lambda c: c.get("/v1/nothing"), 404, "not_found"),
    # not an HTML redirect to the merged path, which behind nginx pointed at port 80
    "doubled slash": (lambda c: upload(c, ("a.png", png()), url="/v1//predict"), 404, "not_found"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_a_4xx_json_with_a_reason(client, case):
    send, status, reason = BAD_INPUTS[case]
    resp = send(client)
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["error"] == reason and body["message"]
    assert "Traceback" not in resp.get_data(as_text=True)
    assert client.get("/healthz").status_code == 200


def test_triton_down_is_a_quick_503(client):
    start = time.perf_counter()
    resp = upload(client, ("a.png", png()))
    assert resp.status_code == 503
    assert resp.get_json()["error"] == "triton_unavailable"
    assert time.perf_counter() - start < 5
    assert resp.headers["Retry-After"] == "5" and resp.get_json()["retry_after"] == 5  # the client waits that long
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "unreachable" in ready.get_json()["reason"]


def test_models_lists_benchmark_even_when_triton_is_down(client):
    body = client.get("/v1/models").get_json()
    rows = {m["name"]: m for m in body["models"]}
    assert rows["resnet50"]["benchmark"]["f1"] == 0.99 and rows["resnet50"]["ready"] is False
    assert "ensemble" not in rows and body["ensemble"]["f1"] == 0.995
    assert "triton_error" in body


def test_metrics_export_benchmark_gauges_and_errors(client):
    upload(client, ("a.txt", b"junk"))
    text = client.get("/metrics").get_data(as_text=True)
    assert 'fakelens_model_f1{model="resnet50"} 0.99' in text
    assert 'fakelens_errors_total{reason="bad_image"}' in text
    assert "fakelens_http_request_duration_seconds_bucket" in text


def test_pages_and_openapi(client):
    page = client.get("/")
    assert page.status_code == 200 and b'id="drop"' in page.data
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.") and "/v1/predict" in spec["paths"]
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/results/benchmark.json").status_code == 404  # only PNGs are served from results


def test_api_keys_guard_v1_only(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# one key a line\nfirst-key-123\n\nsecond-key-456\n")
    app = create_app({"TRITON_URL": f"127.0.0.1:{closed_port()}", "TRITON_TIMEOUT_S": 1.0,
                      "RESULTS_DIR": str(tmp_path), "API_KEYS_FILE": str(keys)})
    client = app.test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "first-key-123"},
                    {"Authorization": "Basic first-key-123"}):
        resp = client.post("/v1/predict", data={"image": (io.BytesIO(png()), "a.png")},
                           content_type="multipart/form-data", headers=headers)
        assert resp.status_code == 401 and resp.get_json()["error"] == "unauthorized", headers
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    for key in ("first-key-123", "second-key-456"):
        resp = client.post("/v1/predict", data={"image": (io.BytesIO(png()), "a.png")},
                           content_type="multipart/form-data", headers={"Authorization": f"Bearer {key}"})
        assert resp.status_code == 503  # past the key check; no Triton behind this app
    assert client.get("/v1/models").status_code == 401
    for open_path in ("/healthz", "/metrics", "/", "/openapi.json"):
        assert client.get(open_path).status_code == 200, open_path


def test_an_empty_keys_file_is_refused_at_start(tmp_path):
    (tmp_path / "keys").write_text("# nothing yet\n")
    with pytest.raises(ValueError, match="no key"):
        create_app({"API_KEYS_FILE": str(tmp_path / "keys"), "RESULTS_DIR": str(tmp_path)})


def test_triton_lost_after_the_models_answered_is_no_500(client):
    """The models answered, then another request found Triton gone and emptied the contract cache: the verdict
    comes from the parameters the models answered under, where reading them again failed (a 500, make chaos)."""
    triton = client.application.extensions["backend"]

    class AnswersThenGone(FakeTriton):
        gone = False

        def infer(self, model, inputs, **kw):
            self.gone = True  # and another request thread finds out
            with triton._lock:
                triton._forget()
            return super().infer(model, inputs, **kw)

        def get_model_config(self, model, **kw):
            if self.gone:
                raise InferenceServerException("connection refused", status="StatusCode.UNAVAILABLE")
            return super().get_model_config(model, **kw)

    triton._client = AnswersThenGone(config(ensemble_weight="1", verdict_rule=RULE))
    resp = upload(client, ("a.png", png()))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["models"]["m"]["prob_fake"] == 0.9


def _histogram_sum(model: str) -> float:
    return REGISTRY.get_sample_value("fakelens_triton_call_duration_seconds_sum", {"model": model}) or 0.0


def test_each_models_latency_is_within_the_request_and_the_histogram_moves_by_it(client):
    """Each model's latency_ms in the answer is its call's wall time: no more than the request's own, and what the
    per-model histogram behind the latency dashboard adds (it once showed the process clock in both)."""
    client.application.extensions["backend"]._client = FakeTriton(
        config("a", max_batch=2, ensemble_weight="0.5", verdict_rule=RULE),
        config("b", ensemble_weight="0.5", verdict_rule=RULE), delay_s=0.01)
    before = {m: _histogram_sum(m) for m in "ab"}
    start = time.perf_counter()
    resp = upload(client, ("a.png", png()), ("b.png", png()), ("c.png", png()), url="/v1/predict/batch")
    wall_ms = (time.perf_counter() - start) * 1000
    assert resp.status_code == 200, resp.get_data(as_text=True)
    models = resp.get_json()["results"][0]["models"]
    assert 20 <= models["a"]["latency_ms"] <= wall_ms  # two chunks of 10 ms
    assert 10 <= models["b"]["latency_ms"] <= wall_ms
    for m in "ab":
        assert _histogram_sum(m) - before[m] == pytest.approx(models[m]["latency_ms"] / 1000, abs=1e-5)


def test_a_keys_file_line_is_a_key_and_an_optional_role(tmp_path):
    from gateway.auth import load_keys

    (tmp_path / "keys").write_text("# clients and reviewers\nclient-1\nreviewer-1 reviewer\n")
    keys = load_keys(str(tmp_path / "keys"))
    assert [(k.secret, k.role) for k in keys] == [(b"client-1", "client"), (b"reviewer-1", "reviewer")]
    assert len(keys[0].id) == 12 and keys[0].id not in "client-1"  # an id, never the key
    (tmp_path / "bad").write_text("key-1 admin\n")
    with pytest.raises(ValueError, match="line 1"):
        load_keys(str(tmp_path / "bad"))
