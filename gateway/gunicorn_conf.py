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


def child_exit(server, worker):
    # Without this, a dead worker's gauges would stay in the multiprocess files.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
