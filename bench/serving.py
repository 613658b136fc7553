"""`make bench`: the served stack against the in-process ceiling and the seed's sequential server.

    python -m bench.serving                       # start a stack on free ports, measure, stop it
    python -m bench.serving --url http://127.0.0.1:8080 --seconds 30

One run measures, on the same machine and the same real CIFAKE test images:
  1. the in-process ceiling (bench/inprocess.py),
  2. the stack (nginx -> gunicorn gateway -> Triton) at each concurrency level, one image a request, with where
     the CPU went, each model's batches, and the wall time the gateway spent storing each request's scan record,
  3. the stack's batch path: `fakelens scan` (client/) at its default settings over a folder,
  4. the seed-style server (one process, three models in a row) at the same levels,
  5. what optional work costs: single uploads at concurrency 16, and the batch path, with every feature
     on and each off, in rounds (fresh stacks, empty databases), on the CIFAKE images and on the same images
     enlarged to 512 px (large enough to carry a generator watermark, so the watermark reader runs
     on each); and the hashing (SHA-256 + PDQ) that records and matching add, per upload, in process,
then prints the table and writes bench/results/serving.json and serving.png.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import requests
import torch
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from bench import RESULTS, inprocess
from bench.load import run_level, sample_test_images
from bench.procs import stack_usage
from fakelens import known
from fakelens.images import open_rgb
from fakelens_client import DEFAULT_BATCH, DEFAULT_CONCURRENCY, Client
from stack.launch import ROOT, UNLIMITED, Ports, Stack, free_ports

# Triton's per-model counters: requests, executions (batches) and time spent queued.
TRITON_COUNTERS = {"nv_inference_count", "nv_inference_exec_count", "nv_inference_queue_duration_us"}
RECORD_HISTOGRAM = "fakelens_record_duration_seconds"  # the gateway's time storing each request's scan records


def measure_levels(name: str, url: str, images: list[bytes], levels: list[int], seconds: float,
                   stack: Stack | None = None) -> list[dict]:
    """One row per concurrency level; with `stack`, each row also says where the CPU time went."""
    run_level(url, images, 2, 2)  # warm-up, not recorded
    rows = []
    for c in levels:
        row = level_row(url, images, c, seconds, stack)
        rows.append(row)
        print(f"  {name:5s} c={c:<3d} {row['rps']:7.1f} req/s  p50 {row['p50_ms']:7.1f} ms  p95 {row['p95_ms']:7.1f} ms  "
              f"p99 {row['p99_ms']:7.1f} ms  errors {row['errors']}", flush=True)
        if stack:
            print(f"        {row['breakdown']}", flush=True)
    return rows


def level_row(url: str, images: list[bytes], concurrency: int, seconds: float, stack: Stack | None = None) -> dict:
    """One concurrency level's summary; with `stack`, also where the CPU time went per request."""
    before = snapshot(stack) if stack else None
    row = run_level(url, images, concurrency, seconds).summary()
    if stack:
        row["breakdown"] = breakdown(before, snapshot(stack), row["ok"])
    return row


def measure_batch_path(url: str, images: list[bytes], folder: Path, stack: Stack | None = None) -> dict:
    """images/s of the client's scan (default batch size and concurrency) over a folder of the test images;
    with `stack`, also where the CPU time went per image."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, raw in enumerate(images):
        files.append(folder / f"{i:05d}.jpg")
        files[-1].write_bytes(raw)
    client = Client(url)
    list(client.scan_files(files[:64]))  # warm-up
    before = snapshot(stack) if stack else None
    start = time.perf_counter()
    recs = list(client.scan_files(files))
    seconds = time.perf_counter() - start
    row = {"images": len(recs), "errors": sum(bool(r["error"]) for r in recs), "seconds": round(seconds, 2),
           "images_per_s": round(len(recs) / seconds, 1), "retried": client.retried,
           "batch_size": DEFAULT_BATCH, "concurrency": DEFAULT_CONCURRENCY}
    if stack:  # per image here: the "request" of breakdown() is one image
        row["breakdown"] = breakdown(before, snapshot(stack), len(recs) - row["errors"])
    print(f"  batch path (fakelens scan, batch {DEFAULT_BATCH}, concurrency {DEFAULT_CONCURRENCY}): "
          f"{row['images_per_s']} images/s, errors {row['errors']}", flush=True)
    if "breakdown" in row:
        print(f"        {row['breakdown']}", flush=True)
    return row


def snapshot(stack: Stack) -> dict:
    """CPU seconds so far per process role (this process is the load client), Triton's per-model counters, and
    the gateway's time spent storing scan records (seconds, count)."""
    cpu = Counter({"load client": sum(resource.getrusage(resource.RUSAGE_SELF)[:2])})
    for label, usage in stack_usage(stack).items():
        cpu[label.split(" ", 2)[2]] += usage.cpu  # "triton: 123 stub resnet50" -> "stub resnet50"
    text = requests.get(f"http://127.0.0.1:{stack.ports.triton_metrics}/metrics", timeout=5).text
    counters = Counter()
    for family in text_string_to_metric_families(text):
        if family.name in TRITON_COUNTERS:
            for sample in family.samples:
                counters[(sample.labels["model"], family.name)] += sample.value
    text = requests.get(f"http://127.0.0.1:{stack.ports.gateway}/metrics", timeout=5).text
    record = Counter({s.name: s.value for family in text_string_to_metric_families(text)
                      if family.name == RECORD_HISTOGRAM for s in family.samples if s.name.endswith(("_sum", "_count"))})
    return {"cpu": cpu, "triton": counters, "record": record}


def breakdown(before: dict, after: dict, requests_ok: int) -> dict:
    """CPU milliseconds per answered request by process role, and each model's mean batch and queue wait."""
    cpu = {role: round((after["cpu"][role] - before["cpu"][role]) * 1000 / max(requests_ok, 1), 2)
           for role in after["cpu"]}
    delta = after["triton"] - before["triton"]
    models = {}
    for model in sorted({m for m, _ in after["triton"]}):
        n, batches = delta[(model, "nv_inference_count")], delta[(model, "nv_inference_exec_count")]
        models[model] = {"mean_batch": round(n / batches, 2) if batches else None,
                         "queue_ms": round(delta[(model, "nv_inference_queue_duration_us")] / n / 1000, 2) if n else None}
    record = after["record"] - before["record"]
    stored = record[f"{RECORD_HISTOGRAM}_count"]
    return {"cpu_ms_per_request": dict(sorted(cpu.items(), key=lambda kv: -kv[1])),
            "cpu_ms_per_request_total": round(sum(cpu.values()), 2), "triton": models,
            # wall time, the wait for the write lock included; None with records off
            "record_ms_per_request": round(record[f"{RECORD_HISTOGRAM}_sum"] * 1000 / stored, 2) if stored else None}


# Each optional feature of the gateway, and the setting that turns it off (5. above).
FEATURES = {"watermark reading": {"FAKELENS_WATERMARKS": "0"},
            "records and matching": {"FAKELENS_RECORDS": "0"}}
AB_CONCURRENCY = 16


def enlarged(images: list[bytes], side: int = 512) -> list[bytes]:
    """The images enlarged to side x side PNG: photo-sized uploads that every pixel-reading feature works on."""
    out = []
    for raw in images:
        buf = io.BytesIO()
        Image.open(io.BytesIO(raw)).convert("RGB").resize((side, side), Image.BICUBIC).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def hashing_ms(sets: dict[str, list[bytes]]) -> dict:
    """In-process milliseconds per upload of the hashes records and matching need (fakelens/known.py)."""
    out = {}
    for name, imgs in sets.items():
        rgbs = [open_rgb(raw) for raw in imgs[:200]]
        start = time.perf_counter()
        for raw, rgb in zip(imgs, rgbs):
            known.hashes_of(raw, rgb)
        out[name] = round((time.perf_counter() - start) * 1000 / len(rgbs), 2)
    return out


def feature_costs(sets: dict[str, list[bytes]], seconds: float, workers: int, threads: int, model_threads: int,
                  repeats: int = 1) -> dict:
    """req/s at AB_CONCURRENCY and the batch path's images/s with every feature on and with each feature off,
    `repeats` rounds: each a fresh stack with an empty database, so neither side inherits the other's records.

    This machine's throughput drifts by 10% between stacks a minute apart, so every other round runs its
    stacks in reverse order, and each feature's cost is the median over rounds of that round's on / off, in
    throughput and in CPU milliseconds per request (the CPU breakdown: on a saturated host, the same cost).
    Stacks kept running side by side, with the load moving between them, were tried: two stacks doing the
    same work differed by 11% for the whole run, so every side gets fresh stacks instead."""
    def measure(env: dict[str, str]) -> dict:
        run_dir = ROOT / ".run" / "bench-features"
        shutil.rmtree(run_dir, ignore_errors=True)
        with Stack(Ports(*free_ports(5)), run_dir=run_dir, services=("triton", "gateway"), workers=workers,
                   threads=threads, model_threads=model_threads, limits=UNLIMITED, gateway_env=env) as stack:
            url = f"http://127.0.0.1:{stack.ports.gateway}"
            run_level(url + "/v1/predict", next(iter(sets.values())), 2, 2)  # warm-up, not recorded
            out = {name: level_row(url + "/v1/predict", imgs, AB_CONCURRENCY, seconds, stack)
                   for name, imgs in sets.items()}
            out["batch path"] = measure_batch_path(url, next(iter(sets.values())), ROOT / ".run" / "bench-images",
                                                   stack)
            return out

    def rate(row: dict) -> float:
        return row["rps"] if "rps" in row else row["images_per_s"]

    def cpu(row: dict, role: str | None = None) -> float:
        b = row["breakdown"]
        return b["cpu_ms_per_request"].get(role, 0) if role else b["cpu_ms_per_request_total"]

    sides = {"all on": {}, **{f"{feature} off": env for feature, env in FEATURES.items()}}
    runs = {side: [] for side in sides}
    for i in range(repeats):
        for side in (list(sides) if i % 2 == 0 else list(sides)[::-1]):
            runs[side].append(measure(sides[side]))
    names = [*sets, "batch path"]
    out = {"concurrency": AB_CONCURRENCY, "repeats": repeats, "seconds": seconds,
           "hashing_ms_per_upload": hashing_ms(sets)}
    for side, rows in runs.items():
        out[f"{side} (runs)"] = rows
        out[f"{side} (mean)"] = {name: round(statistics.mean(rate(r[name]) for r in rows), 1) for name in names}
    for feature in FEATURES:
        pairs = list(zip(runs["all on"], runs[f"{feature} off"]))
        out[f"{feature}: on over off"] = {name: round(statistics.median(rate(on[name]) / rate(off[name])
                                                                        for on, off in pairs), 3) for name in names}
        out[f"{feature}: CPU ms per request, on minus off"] = {
            name: {"all processes": round(statistics.median(cpu(on[name]) - cpu(off[name]) for on, off in pairs), 3),
                   "gateway": round(statistics.median(cpu(on[name], "gunicorn") - cpu(off[name], "gunicorn")
                                                      for on, off in pairs), 3),
                   "all on": round(statistics.median(cpu(on[name]) for on, _ in pairs), 2)}
            for name in names}
        print(f"  {feature}: on over off, median of {len(pairs)} rounds: "
              + "; ".join(f"{name} {v}" for name, v in out[f"{feature}: on over off"].items()), flush=True)
        print(f"  {feature}: CPU ms per request, on minus off: {out[f'{feature}: CPU ms per request, on minus off']}",
              flush=True)
    return out


def seed_levels(images: list[bytes], levels: list[int], seconds: float) -> list[dict]:
    port = free_ports(1)[0]
    proc = subprocess.Popen([sys.executable, "-m", "bench.inprocess", "--repository", str(ROOT / "model_repository"),
                             "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/predict"
        deadline = time.time() + 60
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except requests.ConnectionError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("the seed-style server did not start") from None
                time.sleep(0.3)
        return measure_levels("seed", url, images, levels, seconds)
    finally:
        proc.terminate()
        proc.wait(10)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in ("stack", "seed"):
        rows = result[name]
        ax.plot([r["rps"] for r in rows], [r["p50_ms"] for r in rows], "-o", label=f"{name} p50")
        ax.plot([r["rps"] for r in rows], [r["p95_ms"] for r in rows], ":o", label=f"{name} p95")
        for r in rows:
            ax.annotate(f"c={r['concurrency']}", (r["rps"], r["p50_ms"]), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
    ax.axvline(result["ceiling"]["rps"], color="grey", ls="--", label="in-process ceiling")
    ax.set(xlabel="requests / s (one image each)", ylabel="latency (ms)", yscale="log",
           title=f"Latency against throughput ({result['device']})")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def device() -> str:
    """The machine as measured. The embedded stack serves on the CPU (python-backend twin) even where a GPU exists."""
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    gpu = f"GPU present, not used by the CPU stack: {', '.join(gpus)}" if gpus else "no GPU"
    return f"{cpu_name()}, {os.cpu_count()} cores, {gpu}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running gateway (default: start a stack on free ports)")
    ap.add_argument("--levels", default="1,4,16,64", help="concurrency levels")
    ap.add_argument("--seconds", type=float, default=20, help="per level")
    ap.add_argument("--images", type=int, default=1000, help="distinct CIFAKE test images to upload")
    ap.add_argument("--workers", type=int, help="gunicorn workers of the stack started here (default: the gateway's)")
    ap.add_argument("--threads", type=int, help="gunicorn threads per worker (default: the gateway's)")
    ap.add_argument("--model-threads", type=int, default=1, help="torch threads per Triton model instance")
    ap.add_argument("--only-stack", action="store_true", help="skip the ceiling and the seed (tuning runs)")
    ap.add_argument("--only-features", action="store_true", help="only 5.: what each optional feature costs")
    ap.add_argument("--repeats", type=int, default=1, help="on/off rounds of 5. (each a fresh stack per side)")
    ap.add_argument("--out", type=Path, default=RESULTS / "serving.json")
    args = ap.parse_args()
    levels = [int(c) for c in args.levels.split(",")]
    torch.set_num_threads(2)

    images = [raw for _, raw, _ in sample_test_images(args.images)]
    result = {"device": device(),
              "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds_per_level": args.seconds,
              "stack_config": {"gunicorn_workers": args.workers, "gunicorn_threads": args.threads,
                               "torch_threads_per_model": args.model_threads, "transport": "gRPC"}}
    sets = {"CIFAKE 32x32": images, "enlarged to 512 px": enlarged(images[:200])}
    if args.only_features:
        result["features"] = feature_costs(sets, args.seconds, args.workers, args.threads, args.model_threads,
                                           args.repeats)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
        return
    if not args.only_stack:
        print(f"in-process ceiling ({len(images)} images) ...", flush=True)
        result["ceiling"] = inprocess.ceiling(inprocess.load_models(ROOT / "model_repository"), images)
        print(f"  {result['ceiling']}", flush=True)

    stack = None
    if args.url:
        url = args.url.rstrip("/")
    else:
        run_dir = ROOT / ".run" / "bench"
        for old in run_dir.glob("fakelens.db*"):  # each run records into an empty database
            old.unlink()
        stack = Stack(Ports(*free_ports(5)), run_dir=run_dir, services=("triton", "gateway"), workers=args.workers,
                      threads=args.threads, model_threads=args.model_threads, limits=UNLIMITED).start()
        url = f"http://127.0.0.1:{stack.ports.gateway}"
    try:
        result["stack"] = measure_levels("stack", url + "/v1/predict", images, levels, args.seconds, stack)
        result["batch"] = measure_batch_path(url, images, ROOT / ".run" / "bench-images", stack)
    finally:
        if stack:
            stack.stop()
    if stack:  # a stack started here: the features are measured in stacks of their own
        result["features"] = feature_costs(sets, args.seconds, args.workers, args.threads, args.model_threads,
                                           args.repeats)
    if not args.only_stack:
        result["seed"] = seed_levels(images, levels, args.seconds)
        result["summary"] = summarise(result, levels)
        print(json.dumps(result["summary"], indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if not args.only_stack:
        plot(result, args.out.with_suffix(".png"))
    print(f"wrote {args.out}")


def summarise(result: dict, levels: list[int]) -> dict:
    """The issue's three ratios, and the error count."""
    top = max(levels)
    at = {name: next(r for r in result[name] if r["concurrency"] == top) for name in ("stack", "seed")}
    c1 = next(r for r in result["stack"] if r["concurrency"] == min(levels))
    return {
        "batch_path_over_ceiling": round(result["batch"]["images_per_s"] / result["ceiling"]["rps"], 3),
        f"stack_over_ceiling_c{top}": round(at["stack"]["rps"] / result["ceiling"]["rps"], 3),
        f"stack_over_seed_c{top}": round(at["stack"]["rps"] / max(at["seed"]["rps"], 1e-9), 3),
        f"stack_p50_c{min(levels)}_over_inprocess_batch1": round(c1["p50_ms"] / result["ceiling"]["batch1_p50_ms"], 2),
        "errors": sum(r["errors"] for name in ("stack", "seed") for r in result[name]),
    }


if __name__ == "__main__":
    main()
