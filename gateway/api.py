"""/v1: predictions and model status. Each prediction is parse -> examine -> ask the models -> judge ->
record -> JSON; every step but parsing and the JSON is the core's (fakelens) or the recorder's."""
from __future__ import annotations

import numpy as np
from flask import Blueprint, current_app, g, jsonify, request
from werkzeug.datastructures import FileStorage

from fakelens.backends import FanOut, ModelError
from fakelens.examine import Examined
from fakelens.images import BadImage
from fakelens.judge import Judgement
from fakelens.verdict import RuleError
from gateway import metrics
from gateway.auth import require_key
from gateway.errors import MODELS_RETRY_S, ApiError
from gateway.metrics import load_benchmark
from gateway.responses import prediction

bp = Blueprint("api", __name__, url_prefix="/v1")
bp.before_request(require_key)


def _uploads() -> list[FileStorage]:
    if not request.content_type or not request.content_type.startswith("multipart/form-data"):
        raise ApiError(400, "bad_request", "send the image as multipart/form-data in a field named 'image' "
                                           "(curl -F image=@photo.jpg ...)")
    files = request.files.getlist("image")
    if not files:
        raise ApiError(400, "missing_image", "no file in the form field 'image'")
    return files


def _examine(files: list[FileStorage]) -> list[Examined]:
    """Each upload read by the core's examiner; the first one it cannot judge is a 4xx naming it."""
    examiner, out = current_app.extensions["examiner"], []
    for i, f in enumerate(files):
        raw = f.read()
        metrics.UPLOAD_BYTES.observe(len(raw))
        try:
            out.append(examiner(raw))
        except BadImage as exc:
            where = f"image {i + 1} ({f.filename!r})" if len(files) > 1 else f"{f.filename or 'the upload'!r}"
            status = 413 if exc.reason == "too_many_pixels" else 400
            raise ApiError(status, exc.reason, f"{where}: {exc}", item=i) from None
    return out


def _ask(examined: list[Examined]) -> FanOut:
    """Every model's answer; 503 when none could give one."""
    try:
        fanout = current_app.extensions["backend"].fan_out(np.stack([ex.upload.pixels for ex in examined]))
    except ModelError as exc:  # Triton could not even list its models
        raise ApiError(503, exc.reason, f"no model could answer: {exc}", retry_after=MODELS_RETRY_S) from None
    if not fanout.answers:
        reasons = sorted({e.reason for e in fanout.errors.values()})
        raise ApiError(503, reasons[0] if len(reasons) == 1 else "models_unavailable",
                       "no model could answer: " + "; ".join(f"{m}: {e}" for m, e in fanout.errors.items()),
                       models={m: e.reason for m, e in fanout.errors.items()}, retry_after=MODELS_RETRY_S)
    return fanout


def _judge(files: list[FileStorage], endpoint: str) -> list[dict]:
    examined = _examine(files)
    fanout = _ask(examined)
    metrics.observe_fanout(fanout, len(examined), endpoint)
    try:
        judgements: list[Judgement] = current_app.extensions["judge"].judge(examined, fanout)
    except RuleError as exc:
        raise ApiError(503, "no_verdict_rule", str(exc), retry_after=MODELS_RETRY_S) from None
    metrics.observe_judgements(judgements)
    recorder = current_app.extensions.get("recorder")
    scan_ids = recorder.record(judgements, g.key.id if g.get("key") else None) if recorder else [None] * len(files)
    return [prediction(j, scan_id, f.filename) for j, scan_id, f in zip(judgements, scan_ids, files)]


@bp.post("/predict")
def predict():
    files = _uploads()
    if len(files) > 1:
        raise ApiError(400, "too_many_images", "send one 'image' here; use /v1/predict/batch for several")
    return jsonify(_judge(files, "predict")[0])


@bp.post("/predict/batch")
def predict_batch():
    files = _uploads()
    limit = current_app.config["MAX_BATCH_ITEMS"]
    if len(files) > limit:
        raise ApiError(400, "too_many_images", f"{len(files)} images in one batch; the limit is {limit}")
    results = _judge(files, "batch")
    return jsonify({"count": len(results), "results": results})


@bp.get("/models")
def models():
    bench = load_benchmark(current_app.config["RESULTS_DIR"])
    try:
        ready, reason = current_app.extensions["backend"].readiness(), None
    except ModelError as exc:
        ready, reason = {}, str(exc)
    rows = {m: r for m, r in bench.get("models", {}).items() if m != "ensemble"}
    realworld = load_benchmark(current_app.config["RESULTS_DIR"], "realworld.json")
    # What Triton serves, and what the benchmark measured even while Triton is unreachable.
    names = list(ready) + sorted(set(rows) - set(ready))
    body = {"models": [{"name": m, "ready": ready.get(m, False), "benchmark": rows.get(m)} for m in names],
            "ensemble": bench.get("models", {}).get("ensemble"), "notes": bench.get("notes"),
            "realworld": {k: realworld.get(k) for k in ("images", "as_shipped", "other_container")} if realworld else None}
    if reason:
        body["triton_error"] = reason
    return jsonify(body)
