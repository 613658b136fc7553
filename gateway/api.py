"""/v1: predictions and model status."""
from __future__ import annotations

import numpy as np
from flask import Blueprint, current_app, jsonify, request

from gateway.errors import ApiError
from gateway.images import BadImage, to_pixels
from gateway.metrics import DEGRADED, ERRORS, IMAGES, TRITON_SECONDS, UPLOAD_BYTES, VERDICTS, load_benchmark

bp = Blueprint("api", __name__, url_prefix="/v1")


def _uploads() -> list:
    if not request.content_type or not request.content_type.startswith("multipart/form-data"):
        raise ApiError(400, "bad_request", "send the image as multipart/form-data in a field named 'image' "
                                           "(curl -F image=@photo.jpg ...)")
    files = request.files.getlist("image")
    if not files:
        raise ApiError(400, "missing_image", "no file in the form field 'image'")
    return files


def _pixels(files: list) -> np.ndarray:
    max_pixels = current_app.config["MAX_PIXELS"]
    out = []
    for i, f in enumerate(files):
        raw = f.read()
        UPLOAD_BYTES.observe(len(raw))
        try:
            out.append(to_pixels(raw, max_pixels))
        except BadImage as exc:
            where = f"image {i + 1} ({f.filename!r})" if len(files) > 1 else f"{f.filename or 'the upload'!r}"
            status = 413 if exc.reason == "too_many_pixels" else 400
            raise ApiError(status, exc.reason, f"{where}: {exc}", item=i) from None
    return np.stack(out)


def _verdict(p: float) -> str:
    return "FAKE" if p >= current_app.config["THRESHOLD"] else "REAL"


def _aggregate(p_fake: dict[str, float]) -> float:
    """Weighted mean P(FAKE) of the models that answered, with the benchmark table's
    validation-fitted weights (equal weights when there are none), renormalised over those present."""
    weights = current_app.extensions["ensemble_weights"]
    w = {m: weights.get(m, 1.0) for m in p_fake}
    total = sum(w.values())
    if total <= 0:  # only zero-weight models answered
        w, total = {m: 1.0 for m in p_fake}, len(p_fake)
    return sum(w[m] * p for m, p in p_fake.items()) / total


def _classify(pixels: np.ndarray, endpoint: str) -> list[dict]:
    """One result per image: every model's answer, and their weighted mean as the verdict."""
    answers, errors = current_app.extensions["triton"].fan_out(pixels)
    for model, err in errors.items():
        ERRORS.labels(err.reason).inc()
    if not answers:
        reasons = sorted({e.reason for e in errors.values()})
        raise ApiError(503, reasons[0] if len(reasons) == 1 else "models_unavailable",
                       "no model could answer: " + "; ".join(f"{m}: {e}" for m, e in errors.items()),
                       models={m: e.reason for m, e in errors.items()})
    for model, (_, ms) in answers.items():
        TRITON_SECONDS.labels(model).observe(ms / 1000)
    IMAGES.labels(endpoint).inc(len(pixels))
    if errors:
        DEGRADED.inc(len(pixels))
    results = []
    for i in range(len(pixels)):
        models = {}
        for model, (p, ms) in answers.items():
            models[model] = {"prob_fake": round(float(p[i]), 6), "verdict": _verdict(p[i]), "latency_ms": round(ms, 2)}
            VERDICTS.labels(model, models[model]["verdict"]).inc()
        p_fake = _aggregate({m: float(p[i]) for m, (p, _) in answers.items()})
        verdict = _verdict(p_fake)
        VERDICTS.labels("ensemble", verdict).inc()
        results.append({"verdict": verdict, "prob_fake": round(p_fake, 6), "confidence": round(max(p_fake, 1 - p_fake), 6),
                        "models": models, "degraded": bool(errors), "missing": sorted(errors),
                        "errors": {m: str(e) for m, e in errors.items()}})
    return results


@bp.post("/predict")
def predict():
    files = _uploads()
    if len(files) > 1:
        raise ApiError(400, "too_many_images", "send one 'image' here; use /v1/predict/batch for several")
    result = _classify(_pixels(files), "predict")[0]
    result["filename"] = files[0].filename
    return jsonify(result)


@bp.post("/predict/batch")
def predict_batch():
    files = _uploads()
    limit = current_app.config["MAX_BATCH_ITEMS"]
    if len(files) > limit:
        raise ApiError(400, "too_many_images", f"{len(files)} images in one batch; the limit is {limit}")
    results = _classify(_pixels(files), "batch")
    for f, r in zip(files, results):
        r["filename"] = f.filename
    return jsonify({"count": len(results), "results": results})


@bp.get("/models")
def models():
    triton = current_app.extensions["triton"]
    bench = load_benchmark(current_app.config["RESULTS_DIR"])
    try:
        ready, reason = triton.readiness(), None
    except Exception as exc:  # noqa: BLE001 - any failure means "not known to be ready"
        ready, reason = {m: False for m in triton.models}, str(exc)
    rows = bench.get("models", {})
    body = {"models": [{"name": m, "ready": ready[m], "benchmark": rows.get(m)} for m in triton.models],
            "ensemble": rows.get("ensemble"), "notes": bench.get("notes")}
    if reason:
        body["triton_error"] = reason
    return jsonify(body)
