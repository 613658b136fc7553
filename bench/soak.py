"""`make soak`: 10 minutes at concurrency 8 against a fresh stack; errors and memory growth.

    python -m bench.soak                 # 600 s after a 120 s warm-up
    python -m bench.soak --seconds 120   # shorter

Resident memory of every process of the stack (tritonserver, its python-backend
stubs, the gunicorn master and workers) is read from /proc after the warm-up and
then every `--every` seconds; growth is last sample over the first, per process.
Writes bench/results/soak.json and soak.png.
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path

from bench import RESULTS
from bench.load import Level, run_level, sample_test_images
from bench.procs import Usage, stack_usage
from stack.launch import ROOT, UNLIMITED, Ports, Stack, free_ports


def rss(usage: dict[str, Usage]) -> dict[str, int]:
    return {name: u.rss for name, u in usage.items()}


def windows(url: str, images: list[bytes], concurrency: int, seconds: float, every: float) -> Iterator[Level]:
    """Load in `every`-long windows for `seconds`; each window opens fresh keep-alive connections,
    so every gunicorn worker gets its share."""
    start = time.time()
    while time.time() - start < seconds:
        yield run_level(url, images, concurrency, min(every, seconds - (time.time() - start)))


def plot(samples: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    names = sorted(samples[0]["rss"])
    for name in names:
        ax.plot([s["t"] for s in samples], [s["rss"].get(name, float("nan")) / 2**20 for s in samples],
                label=name)
    ax.set(xlabel="seconds after warm-up", ylabel="resident memory (MiB)", title="Soak: memory per process")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--warmup", type=float, default=120)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--every", type=float, default=30, help="seconds between memory samples")
    ap.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = ap.parse_args()

    images = [raw for _, raw, _ in sample_test_images(1000)]
    with Stack(Ports(*free_ports(5)), run_dir=ROOT / ".run" / "soak", services=("triton", "gateway"),
               limits=UNLIMITED) as stack:
        url = f"http://127.0.0.1:{stack.ports.gateway}/v1/predict"
        print(f"warm-up {args.warmup:.0f} s ...", flush=True)
        # In windows like the soak itself, so both workers are warm before memory is first read.
        idle = stack_usage(stack)
        for _ in windows(url, images, args.concurrency, args.warmup, args.every):
            pass
        warm = stack_usage(stack)
        warmup_cpu = {name: round(u.cpu - idle[name].cpu, 1) for name, u in warm.items() if name in idle}
        print(f"CPU seconds each process spent in the warm-up: {warmup_cpu}", flush=True)
        samples = [{"t": 0.0, "rss": rss(warm)}]
        rows, start = [], time.time()
        for level in windows(url, images, args.concurrency, args.seconds, args.every):
            rows.append(level.summary())
            samples.append({"t": round(time.time() - start, 1), "rss": rss(stack_usage(stack))})
            print(f"  t={samples[-1]['t']:6.0f} s  {rows[-1]['rps']:6.1f} req/s  p95 {rows[-1]['p95_ms']:6.1f} ms  "
                  f"errors {rows[-1]['errors']}  total RSS {sum(samples[-1]['rss'].values()) / 2**20:,.0f} MiB",
                  flush=True)

    first, last = samples[0]["rss"], samples[-1]["rss"]
    growth = {name: round(last[name] / first[name] - 1, 4) for name in first if name in last}
    result = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "concurrency": args.concurrency,
        "seconds": round(time.time() - start, 1), "warmup_seconds": args.warmup, "warmup_cpu_seconds": warmup_cpu,
        "requests": sum(r["requests"] for r in rows), "errors": sum(r["errors"] for r in rows),
        "rps": round(sum(r["ok"] for r in rows) / sum(r["seconds"] for r in rows), 1),
        "p95_ms_worst_window": max(r["p95_ms"] for r in rows),
        "max_rss_growth": max(growth.values()), "rss_growth": growth,
        "processes_replaced": sorted(set(first) ^ set(last)),
        "rss_mib_first": {k: round(v / 2**20, 1) for k, v in first.items()},
        "rss_mib_last": {k: round(v / 2**20, 1) for k, v in last.items()},
        "windows": rows,
        "rss_mib_samples": [{"t": x["t"], "rss": {k: round(v / 2**20, 1) for k, v in x["rss"].items()}} for x in samples],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    plot(samples, args.out.with_suffix(".png"))
    print(json.dumps({k: result[k] for k in ("requests", "errors", "rps", "max_rss_growth", "processes_replaced")},
                     indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
