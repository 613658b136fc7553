"""gunicorn settings for the gateway; every value can be set from the environment."""
import os

from prometheus_client import multiprocess

bind = os.environ.get("GATEWAY_BIND", "0.0.0.0:8080")
workers = int(os.environ.get("GATEWAY_WORKERS", "2"))
# Threads, not more processes: a request mostly waits on Triton, and threads share one gRPC channel.
worker_class = "gthread"
threads = int(os.environ.get("GATEWAY_THREADS", "8"))
timeout = 60
# The app is built once, in the master, and the workers fork from it: the banks' index it takes up is shared
# by every worker, copy-on-write, and a worker that replaces a dead one serves at once. Built in each worker,
# the index would cost its memory once per worker (README, How it scales).
preload_app = True
wsgi_app = "gateway.app:create_app(follow=False)"  # the one place that names the app
graceful_timeout = 10
# gunicorn 27's control socket (gunicornc: resize, reload, stop) defaults to one path per user, ~/.gunicorn/,
# which every gunicorn of that user would take in turn: not used here.
control_socket_disable = True
accesslog = "-"
errorlog = "-"


def post_worker_init(worker):
    # Threads do not survive a fork: each worker starts its own follower of the database (and retention sweep).
    from gateway.app import start_threads

    start_threads(worker.wsgi)


def worker_exit(server, worker):
    # Close this worker's database connections: when the last one closes, SQLite folds its write-ahead log back
    # into the database file, so a stopped stack leaves one file (.data/fakelens.db) to copy or back up, not three.
    # The threads stop first: their next step, during the worker's last moments, would open a connection again.
    from gateway.app import stop_threads

    stop_threads(worker.wsgi)
    storage = worker.wsgi.extensions.get("storage")
    if storage is not None:
        storage.close()


def on_exit(server):
    # The master, once every worker has gone: the last to close the database, whatever order the workers closed in.
    storage = server.app.wsgi().extensions.get("storage")
    if storage is not None:
        storage.close(last=True)


def child_exit(server, worker):
    # Without this, a dead worker's gauges would stay in the multiprocess files.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
