"""`make chaos`: faults injected into a stack under load, and what the clients saw.

    python -m bench.chaos

Scenarios, each under continuous load at concurrency 4 with real CIFAKE uploads:
  triton_stop   tritonserver killed, then started again on the same ports; the gateway is not restarted
  worker_kill   one gunicorn worker SIGKILLed
  model_unload  resnet50 unloaded from Triton, then loaded again
  database_lock another process holds the SQLite database's write lock for 8 s: predictions must still answer
                200 (unrecorded), within the store's lock timeout, and records resume once it lets go
Writes bench/results/chaos.json.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import requests
import tritonclient.http as httpclient

from bench import RESULTS
from bench.load import Level, run_level, sample_test_images
from gateway.storage import RETRY_S
from stack.launch import ROOT, UNLIMITED, Ports, Stack, free_ports

CONCURRENCY = 4
LOCK_S = 8


class Background:
    """run_level in a thread; `.t()` is seconds since the load started."""

    def __init__(self, url: str, images: list[bytes], seconds: float):
        self.level: Level | None = None
        self.t0 = time.perf_counter()
        self.thread = threading.Thread(target=self._run, args=(url, images, seconds))
        self.thread.start()

    def _run(self, url, images, seconds):
        self.level = run_level(url, images, CONCURRENCY, seconds)

    def t(self) -> float:
        return time.perf_counter() - self.t0

    def join(self) -> Level:
        self.thread.join()
        return self.level


def statuses(events, since: float = 0, until: float = float("inf")) -> dict[str, int]:
    """{HTTP status: count} of the requests started in [since, until); 0 = no answer."""
    return dict(Counter(str(status) for t, status, _ in events if since <= t < until))


def triton_stop(stack: Stack, url: str, images: list[bytes]) -> dict:
    # Triton takes 30 s to start its three model processes here, 65-84 s while the gateway answers 200-240 503s a second
    load = Background(url, images, 120)
    time.sleep(5)
    down = load.t()
    stack.stop_service("triton")
    time.sleep(5)
    stack.start_service("triton")  # returns once Triton reports ready
    up = load.t()
    events = load.join().events
    failed_ms = [ms for t, status, ms in events if status != 200]
    first_ok = min((t + ms / 1000 for t, status, ms in events if status == 200 and t >= up), default=None)
    return {"triton_down_at_s": round(down, 1), "triton_ready_at_s": round(up, 1),
            "before": statuses(events, 0, down), "while_down": statuses(events, down, up), "after": statuses(events, up),
            "slowest_failed_request_ms": round(max(failed_ms), 1) if failed_ms else None,
            "first_200_after_ready_s": round(first_ok - up, 2) if first_ok else None,
            "unanswered_requests": sum(1 for _, status, _ in events if status == 0)}  # timed out or dropped


def worker_kill(stack: Stack, url: str, images: list[bytes]) -> dict:
    gateway = next(s for s in stack.started if s.name == "gateway")
    workers = subprocess.run(["pgrep", "-P", str(gateway.proc.pid)], capture_output=True, text=True).stdout.split()
    load = Background(url, images, 15)
    time.sleep(4)
    killed_at = load.t()
    os.kill(int(workers[0]), signal.SIGKILL)
    events = load.join().events
    return {"workers": len(workers), "killed_at_s": round(killed_at, 1), "statuses": statuses(events),
            "failed": sum(1 for _, status, _ in events if status != 200), "in_flight_bound": CONCURRENCY,
            "after_kill_plus_2s": statuses(events, killed_at + 2)}


def model_unload(stack: Stack, url: str, images: list[bytes]) -> dict:
    triton = httpclient.InferenceServerClient(f"127.0.0.1:{stack.ports.triton_http}")
    load = Background(url, images, 15)
    time.sleep(4)
    triton.unload_model("resnet50")
    probe = requests.post(url, files={"image": ("probe.jpg", images[0])}, timeout=30).json()
    time.sleep(4)
    triton.load_model("resnet50")
    events = load.join().events
    after = requests.post(url, files={"image": ("probe.jpg", images[0])}, timeout=30).json()
    return {"statuses": statuses(events), "while_unloaded": {k: probe[k] for k in ("degraded", "missing", "verdict")},
            "models_answering_while_unloaded": sorted(probe["models"]), "after_reload_degraded": after["degraded"]}


def database_lock(stack: Stack, url: str, images: list[bytes]) -> dict:
    db = stack.run_dir / "fakelens.db"  # the stack's default database (no FAKELENS_DATABASE_URL given)
    count = "SELECT count(*) FROM scans"
    before = sqlite3.connect(db).execute(count).fetchone()[0]
    load = Background(url, images, 20)
    time.sleep(4)
    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    locked = load.t()
    time.sleep(LOCK_S)
    lock.execute("ROLLBACK")
    released = load.t()
    lock.close()
    events = load.join().events
    resumed = released + RETRY_S + 0.5  # storage waits out its retry pause before it tries again
    answered = sum(1 for _, status, _ in events if status == 200)

    def slowest(since: float, until: float = float("inf")) -> float:
        return round(max((ms for t, _, ms in events if since <= t < until), default=0), 1)
    return {"locked_at_s": round(locked, 1), "released_at_s": round(released, 1),
            "before": statuses(events, 0, locked), "while_locked": statuses(events, locked, released),
            "after": statuses(events, released),
            "slowest_ms": {"before": slowest(0, locked), "while_locked": slowest(locked, released),
                           "after_resume": slowest(resumed)},
            "answered_200": answered, "recorded": sqlite3.connect(db).execute(count).fetchone()[0] - before,
            "answered_200_after_resume": sum(1 for t, status, _ in events if status == 200 and t >= resumed)}


SCENARIOS = {f.__name__: f for f in (model_unload, worker_kill, database_lock, triton_stop)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=RESULTS / "chaos.json")
    ap.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS), help="these scenarios")
    args = ap.parse_args()
    images = [raw for _, raw, _ in sample_test_images(500)]
    result = {"generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "concurrency": CONCURRENCY}
    with Stack(Ports(*free_ports(5)), run_dir=ROOT / ".run" / "chaos", services=("triton", "gateway"),
               limits=UNLIMITED) as stack:
        url = f"http://127.0.0.1:{stack.ports.gateway}/v1/predict"
        run_level(url, images, CONCURRENCY, 3)  # warm-up
        for name in args.only:
            print(f"{name} ...", flush=True)
            result[name] = SCENARIOS[name](stack, url, images)
            print(json.dumps(result[name], indent=2), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
