"""Application factory: `create_app(config)`. gunicorn builds the app once, in its master, with
`create_app(follow=False)` (gateway/gunicorn_conf.py), and each worker then calls `follow_banks`."""
from __future__ import annotations

import time

from flask import Flask, g, request

from gateway import api, errors, health, pages, records, review
from gateway.auth import load_keys
from gateway.config import from_env
from gateway.known import Index
from gateway.metrics import REQUEST_SECONDS, init_labels
from gateway.storage import Storage, StoreError
from gateway.triton import Triton


def create_app(config: dict | None = None, follow: bool = True) -> Flask:
    """follow=False: build the app in a process that will fork (gunicorn's master), with no threads and no
    database connection left open; each process that serves then calls `follow_banks`."""
    app = Flask(__name__, static_folder="static", static_url_path="/static")
    app.config.from_mapping(from_env())
    if config:
        app.config.update(config)
    app.json.sort_keys = False
    # One spelling per path: Werkzeug would answer "/v1//predict" with an HTML 308 to the merged path, built
    # from the Host nginx passes on (no port), so behind the front door on any port but 80 it led nowhere.
    app.url_map.merge_slashes = False  # before the blueprints: a rule takes the map's value when it is added
    app.extensions["triton"] = Triton(app.config["TRITON_URL"], app.config["TRITON_TIMEOUT_S"])
    app.extensions["api_keys"] = load_keys(app.config["API_KEYS_FILE"])
    if app.config["RECORDS"]:
        app.extensions["storage"] = storage = Storage(app.config["DATABASE_URL"])
        app.extensions["index"] = index = Index()
        try:
            storage.migrate()  # idempotent; under gunicorn the master has done it already
            index.take_up(storage.banks)  # all of it before the first request
        except StoreError as exc:  # predictions go on unrecorded; storage migrates when the database is back
            app.logger.warning("database unavailable at start: %s", exc)
        if follow:
            follow_banks(app)
        else:  # a connection must not be shared with forked children; each opens its own
            storage.close()
    for bp in (api.bp, review.bp, health.bp, pages.bp):
        app.register_blueprint(bp)
    errors.register(app)
    init_labels()

    @app.before_request
    def start_timer():
        g.start = time.perf_counter()

    @app.after_request
    def observe(response):
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"  # bounded label values
        REQUEST_SECONDS.labels(endpoint, request.method, str(response.status_code)).observe(
            time.perf_counter() - g.get("start", time.perf_counter()))
        return response

    return app


def follow_banks(app: Flask) -> None:
    """Start the thread that keeps this process's index up with the database (records.follow)."""
    if app.config["RECORDS"]:
        app.extensions["follower"] = records.follow(app.extensions["index"], app.extensions["storage"].banks)
