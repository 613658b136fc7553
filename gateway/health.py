"""Liveness, readiness and metrics."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from fakelens.backends import ModelError
from gateway.metrics import render

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    try:
        ready = current_app.extensions["backend"].readiness()
    except ModelError as exc:
        return jsonify(status="unavailable", reason=str(exc)), 503
    missing = [m for m, ok in ready.items() if not ok]
    if missing:
        return jsonify(status="degraded", reason=f"models not ready on Triton: {', '.join(missing)}",
                       models=ready), 503
    return jsonify(status="ready", models=ready)


@bp.get("/metrics")
def metrics():
    storage = current_app.extensions.get("storage")
    return Response(render(current_app.config["RESULTS_DIR"], storage.scans if storage else None),
                    mimetype="text/plain; version=0.0.4")
