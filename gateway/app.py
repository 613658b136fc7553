"""Application factory: `create_app(config)`. gunicorn builds the app once, in its master, with
`create_app(follow=False)` (gateway/gunicorn_conf.py), and each worker then calls `start_threads`."""
from __future__ import annotations

import time

from flask import Flask, g, request

from fakelens.c2pa_reader import Reader
from fakelens.examine import Examiner
from fakelens.judge import Judge
from fakelens.known import Index
from fakelens.triton import Triton
from gateway import api, errors, health, pages, review
from gateway.auth import load_keys
from gateway.config import from_env
from gateway.follower import Follower
from gateway.metrics import C2PA_ABANDONED, REQUEST_SECONDS, init_labels
from gateway.recorder import Recorder
from gateway.retention import Sweeper
from gateway.storage import Storage, StoreError


def create_app(config: dict | None = None, follow: bool = True) -> Flask:
    """follow=False: build the app in a process that will fork (gunicorn's master), with no threads and no
    database connection left open; each process that serves then calls `start_threads`."""
    app = Flask(__name__, static_folder="static", static_url_path="/static")
    app.config.from_mapping(from_env())
    if config:
        app.config.update(config)
    app.json.sort_keys = False
    # One spelling per path: Werkzeug would answer "/v1//predict" with an HTML 308 to the merged path, built
    # from the Host nginx passes on (no port), so behind the front door on any port but 80 it led nowhere.
    app.url_map.merge_slashes = False  # before the blueprints: a rule takes the map's value when it is added
    cfg = app.config
    app.extensions["backend"] = Triton(cfg["TRITON_URL"], cfg["TRITON_TIMEOUT_S"], on_index=init_labels)
    app.extensions["examiner"] = Examiner(cfg["MAX_PIXELS"], cfg["WATERMARKS"], hashes=cfg["RECORDS"],
                                          c2pa=Reader(on_abandon=C2PA_ABANDONED.inc))
    app.extensions["api_keys"] = load_keys(cfg["API_KEYS_FILE"])
    index = None
    if cfg["RECORDS"]:
        app.extensions["storage"] = storage = Storage(cfg["DATABASE_URL"])
        app.extensions["index"] = index = Index()
        app.extensions["recorder"] = Recorder(storage.scans, cfg["IMAGE_RETENTION_DAYS"] if cfg["KEEP_IMAGES"] else None)
        try:
            storage.migrate()  # idempotent; under gunicorn the master has done it already
            index.take_up(storage.banks)  # all of it before the first request
        except StoreError as exc:  # predictions go on unrecorded; the storage migrates when the database is back
            app.logger.warning("database unavailable at start: %s", exc)
        if follow:
            start_threads(app)
        else:  # a connection must not be shared with forked children; each opens its own
            storage.close()
    app.extensions["judge"] = Judge(index)
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


def start_threads(app: Flask) -> None:
    """This process's threads: the bank follower, and the retention sweep when uploads are kept."""
    if not app.config["RECORDS"]:
        return
    storage = app.extensions["storage"]
    threads = [Follower.start_new(app.extensions["index"], storage.banks)]
    if app.config["KEEP_IMAGES"]:
        threads.append(Sweeper.start_new(storage.scans))
    app.extensions["threads"] = threads


def stop_threads(app: Flask) -> None:
    """Stop them before the database connections close: a step after that would open one again."""
    for thread in app.extensions.get("threads", []):
        thread.stop()
