"""/v1: predictions and model status."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from flask import Blueprint, current_app, jsonify, request

from gateway import records
from gateway.auth import require_key
from gateway.errors import MODELS_RETRY_S, ApiError
from gateway.images import BadImage, Upload
from gateway.metrics import DEGRADED, ERRORS, IMAGES, PROVENANCE, TRITON_SECONDS, UPLOAD_BYTES, VERDICTS, load_benchmark
from gateway.triton import Answer, ModelError, get_triton
from gateway.uploads import examine
from gateway.verdict import Rule, RuleError

bp = Blueprint("api", __name__, url_prefix="/v1")
bp.before_request(require_key)


def _uploads() -> list:
    if not request.content_type or not request.content_type.startswith("multipart/form-data"):
        raise ApiError(400, "bad_request", "send the image as multipart/form-data in a field named 'image' "
                                           "(curl -F image=@photo.jpg ...)")
    files = request.files.getlist("image")
    if not files:
        raise ApiError(400, "missing_image", "no file in the form field 'image'")
    return files


@dataclass(frozen=True)
class Item:
    """One upload as the predict endpoints use it."""
    raw: bytes
    upload: Upload
    provenance: dict
    hashes: dict | None  # {"sha256", "pdq", "pdq_quality"} when records are on


def _read(files: list) -> list[Item]:
    """Each upload decoded for the models, with the provenance its bytes and pixels carry, and its hashes."""
    cfg = current_app.config
    out = []
    for i, f in enumerate(files):
        raw = f.read()
        UPLOAD_BYTES.observe(len(raw))
        try:
            out.append(Item(raw, *examine(raw, cfg["MAX_PIXELS"], cfg["WATERMARKS"], cfg["RECORDS"])))
        except BadImage as exc:
            where = f"image {i + 1} ({f.filename!r})" if len(files) > 1 else f"{f.filename or 'the upload'!r}"
            status = 413 if exc.reason == "too_many_pixels" else 400
            raise ApiError(status, exc.reason, f"{where}: {exc}", item=i) from None
    return out


@functools.lru_cache(maxsize=16)
def _parse_rule(params: tuple[tuple[str, str, str], ...]) -> Rule:
    """Parsed once per set of loaded models and their configs, not once per request."""
    return Rule.from_parameters({m: {k: v for k, v in (("ensemble_weight", w), ("verdict_rule", r)) if v is not None}
                                 for m, w, r in params})


def _rule(answers: dict[str, Answer]) -> Rule:
    # The parameters each model answered under: asking Triton again could find it gone since (a 500, make chaos)
    params = {m: answers[m].parameters for m in sorted(answers)}
    try:
        return _parse_rule(tuple((m, p.get("ensemble_weight"), p.get("verdict_rule")) for m, p in params.items()))
    except RuleError as exc:
        raise ApiError(503, "no_verdict_rule", str(exc), retry_after=MODELS_RETRY_S) from None


def _results(items: list[Item], endpoint: str) -> list[dict]:
    """One result per upload: every model's view of its 32x32 thumbnail, the provenance, a match in the banks,
    the verdict, and its scan record."""
    pixels = np.stack([it.upload.pixels for it in items])
    try:
        answers, errors = get_triton().fan_out(pixels)
    except ModelError as exc:  # Triton could not even list its models
        raise ApiError(503, exc.reason, f"no model could answer: {exc}", retry_after=MODELS_RETRY_S) from None
    if not answers:
        reasons = sorted({e.reason for e in errors.values()})
        raise ApiError(503, reasons[0] if len(reasons) == 1 else "models_unavailable",
                       "no model could answer: " + "; ".join(f"{m}: {e}" for m, e in errors.items()),
                       models={m: e.reason for m, e in errors.items()}, retry_after=MODELS_RETRY_S)
    for err in errors.values():
        ERRORS.labels(err.reason).inc()
    rule = _rule(answers)
    for model, a in answers.items():
        TRITON_SECONDS.labels(model).observe(a.latency_ms / 1000)
    IMAGES.labels(endpoint).inc(len(pixels))
    if errors:
        DEGRADED.inc(len(pixels))
    results = []
    found = records.matches([it.hashes for it in items])
    for i, (it, match) in enumerate(zip(items, found)):
        upload, prov = it.upload, it.provenance
        models = {}
        for model, a in answers.items():
            p = float(a.p_fake[i])
            models[model] = {"prob_fake": round(p, 6), "verdict": rule.label(p), "latency_ms": round(a.latency_ms, 2),
                             "version": a.version}
            VERDICTS.labels(model, models[model]["verdict"]).inc()
        p_models = {m: float(a.p_fake[i]) for m, a in answers.items()}
        p_fake = rule.combine(p_models)
        decision = rule.decide(p_models, (upload.width, upload.height), upload.detail_lost, prov, match)
        VERDICTS.labels("ensemble", decision["verdict"]).inc()
        for e in prov["evidence"]:
            PROVENANCE.labels(e["source"], str(e["ai_generated"]).lower()).inc()
        results.append({**decision, "prob_fake": round(p_fake, 6),
                        "thumbnail": {"note": "the models' view: the upload centre-cropped and scaled to 32x32",
                                      "verdict": rule.label(p_fake), "prob_fake": round(p_fake, 6),
                                      "width": upload.width, "height": upload.height,
                                      "detail_lost": upload.detail_lost,
                                      "in_domain": rule.domain((upload.width, upload.height),
                                                               upload.detail_lost) is not None},
                        "models": models, "provenance": prov, "degraded": bool(errors), "missing": sorted(errors),
                        "errors": {m: str(e) for m, e in errors.items()}})
    records.record([it.raw for it in items], [it.upload.format for it in items], [it.hashes for it in items],
                   results, rule)
    return results


@bp.post("/predict")
def predict():
    files = _uploads()
    if len(files) > 1:
        raise ApiError(400, "too_many_images", "send one 'image' here; use /v1/predict/batch for several")
    result = _results(_read(files), "predict")[0]
    result["filename"] = files[0].filename
    return jsonify(result)


@bp.post("/predict/batch")
def predict_batch():
    files = _uploads()
    limit = current_app.config["MAX_BATCH_ITEMS"]
    if len(files) > limit:
        raise ApiError(400, "too_many_images", f"{len(files)} images in one batch; the limit is {limit}")
    results = _results(_read(files), "batch")
    for f, r in zip(files, results):
        r["filename"] = f.filename
    return jsonify({"count": len(results), "results": results})


@bp.get("/models")
def models():
    bench = load_benchmark(current_app.config["RESULTS_DIR"])
    try:
        ready, reason = get_triton().readiness(), None
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
