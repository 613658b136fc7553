"""The upload page, the training plots it shows, and the OpenAPI description."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, current_app, send_from_directory

bp = Blueprint("pages", __name__)
STATIC = Path(__file__).resolve().parent / "static"


@bp.get("/")
def index():
    return send_from_directory(STATIC, "index.html")


@bp.get("/openapi.json")
def openapi():
    return send_from_directory(STATIC, "openapi.json")


@bp.get("/results/<path:name>")
def results(name: str):
    """Training plots (PNG) for the benchmark tab; nothing else from that folder."""
    if not name.endswith(".png"):
        abort(404)
    return send_from_directory(current_app.config["RESULTS_DIR"], name)
