"""Every error leaves the gateway as JSON with a reason, never as an HTML page or a traceback."""
from __future__ import annotations

from flask import Flask, current_app, jsonify
from werkzeug.exceptions import HTTPException

from gateway.metrics import ERRORS
from gateway.storage import RETRY_S, StoreError

# Werkzeug's own errors -> our reason labels
HTTP_REASONS = {404: "not_found", 405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type"}
# A 503 for models Triton cannot serve right now says when to try again, as nginx's own 503 does
# (proxy/fakelens.conf.template); the client waits that long before its retry.
MODELS_RETRY_S = 5


class ApiError(Exception):
    """A request the gateway refuses: the status, a reason label and a message for a person."""
    def __init__(self, status: int, reason: str, message: str, **extra):
        super().__init__(message)
        self.status, self.reason, self.message, self.extra = status, reason, message, extra


def error_response(status: int, reason: str, message: str, retry_after: int | None = None, **extra):
    """The JSON error; with `retry_after` (seconds), a Retry-After header and the same figure in the body."""
    ERRORS.labels(reason).inc()
    wait = {} if retry_after is None else {"retry_after": retry_after}
    response = jsonify({"error": reason, "message": message, **wait, **extra})
    if wait:
        response.headers["Retry-After"] = str(retry_after)
    return response, status


def register(app: Flask) -> None:
    """Route every error of the app to a JSON answer."""
    @app.errorhandler(ApiError)
    def api_error(e: ApiError):
        response, status = error_response(e.status, e.reason, e.message, **e.extra)
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="fakelens"'
        return response, status

    @app.errorhandler(StoreError)
    def store_error(e: StoreError):
        return error_response(503, "database_unavailable", f"the database did not answer in time: {e}",
                              retry_after=RETRY_S)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        message = e.description
        if e.code == 413:
            message = f"the upload is larger than {current_app.config['MAX_CONTENT_LENGTH']:,} bytes"
        return error_response(e.code or 500, HTTP_REASONS.get(e.code, "bad_request"), message)

    @app.errorhandler(Exception)
    def unexpected(e: Exception):
        current_app.logger.exception("unhandled error")
        return error_response(500, "internal", "internal error; the gateway log has the details")
