"""gunicorn settings for the gateway; every value can be set from the environment."""
import os

from prometheus_client import multiprocess

bind = os.environ.get("GATEWAY_BIND", "0.0.0.0:8080")
workers = int(os.environ.get("GATEWAY_WORKERS", "2"))
# Threads, not more processes: a request mostly waits on Triton, and threads share one gRPC channel.
worker_class = "gthread"
threads = int(os.environ.get("GATEWAY_THREADS", "8"))
timeout = 60
graceful_timeout = 10
accesslog = "-"
errorlog = "-"


def on_starting(server):
    # Migrate once, in the master, before any worker opens the database (the workers' own check is then a no-op).
    from gateway.config import from_env
    from gateway.store import Store, StoreError

    settings = from_env()
    if settings["RECORDS"]:
        try:
            Store(settings["DATABASE_URL"]).migrate()
        except StoreError as exc:  # the workers try again, and keep answering meanwhile
            server.log.warning("database unavailable at start: %s", exc)


def child_exit(server, worker):
    # Without this, a dead worker's gauges would stay in the multiprocess files.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
