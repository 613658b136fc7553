"""Train recipe variants of one model side by side and keep the best by validation F1.

    python -m training.sweep --model resnet50 --variant seed=2 --variant batch_size=256,lr=2e-3 --deadline 900
    make sweep MODEL=resnet50 VARIANTS="seed=2 seed=3 batch_size=256,lr=2e-3" DEADLINE=900

Each variant is one `training.train` process with its own workdir and results
(<workdir>/sweep/<name>/), its output in <name>.log there. On a GPU a ResNet-50
step at 32x32 costs kernel launches on the CPU, not GPU arithmetic, so several
processes share one GPU well: six ran at ~45% of the speed of one alone on an H200,
2.7x the work in the same time.

At the deadline the unfinished ones are stopped. Of the finished ones, the best by
validation F1 as served is installed as if `make train` had made it:
<workdir>/<model>/final.pt and <results>/<model>/train.json; every variant's
per-epoch log goes to <results>/<model>/sweep/<name>.jsonl. The test split is never read.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from training.models import MODELS
from training.paths import RESULTS, ROOT, RUNS
from training.train import parse_overrides


def variant_name(pairs: list[str]) -> str:
    return "_".join(p.replace("=", "") for p in pairs)


def launch(model: str, pairs: list[str], root: Path, passthrough: list[str]) -> subprocess.Popen:
    root.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "training.train", "--model", model, "--workdir", str(root / "runs"),
           "--results", str(root / "results"), *passthrough]
    for pair in pairs:
        cmd += ["--set", pair]
    with open(root / f"{root.name}.log", "w") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def last_epoch(root: Path, model: str) -> str:
    log = root / "runs" / model / "log.jsonl"
    lines = log.read_text().splitlines() if log.is_file() else []
    if not lines:
        return "no epoch yet"
    row = json.loads(lines[-1])
    return f"epoch {row['epoch']}, val F1 {row['val_f1']:.4f}"


def run(model: str, variants: list[list[str]], deadline: float, workdir: Path, results: Path,
        passthrough: list[str]) -> dict | None:
    """Returns the winner's train.json (None if no variant finished)."""
    sweep = workdir / "sweep"
    roots = {variant_name(v): sweep / variant_name(v) for v in variants}
    procs = {name: launch(model, v, roots[name], passthrough) for name, v in zip(roots, variants)}
    start = last_report = time.time()
    while any(p.poll() is None for p in procs.values()) and time.time() - start < deadline:
        time.sleep(2)
        if time.time() - last_report >= 60:
            last_report = time.time()
            print(f"{time.time() - start:.0f} s: " + "; ".join(f"{n} {last_epoch(roots[n], model)}" for n in roots),
                  flush=True)
    stopped = {name for name, p in procs.items() if p.poll() is None}
    for name in stopped:
        procs[name].terminate()
        procs[name].wait()

    finished = {}
    (results / model / "sweep").mkdir(parents=True, exist_ok=True)
    for name, root in roots.items():
        log = root / "runs" / model / "log.jsonl"
        if log.is_file():
            shutil.copy(log, results / model / "sweep" / f"{name}.jsonl")
        summary = root / "results" / model / "train.json"
        if procs[name].returncode == 0 and summary.is_file():
            finished[name] = json.loads(summary.read_text())
        if name in finished:
            state = f"val F1 {finished[name]['val_f1_served']:.4f} as served"
        else:
            state = "stopped at the deadline" if name in stopped else f"failed (exit code {procs[name].returncode})"
        print(f"{name}: {state} ({last_epoch(root, model)}; log {root / f'{name}.log'})")
    if not finished:
        return None
    best = max(finished, key=lambda n: finished[n]["val_f1_served"])
    (workdir / model).mkdir(parents=True, exist_ok=True)
    shutil.copy(roots[best] / "runs" / model / "final.pt", workdir / model / "final.pt")
    shutil.copy(roots[best] / "results" / model / "train.json", results / model / "train.json")
    print(f"best: {best} -> {workdir / model / 'final.pt'} (run `make export MODEL={model}`)")
    return finished[best]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(MODELS), required=True)
    ap.add_argument("--variant", action="append", required=True, metavar="KEY=VALUE[,KEY=VALUE...]",
                    help="recipe overrides for one variant (repeatable; e.g. seed=2 for another seed of the recipe)")
    ap.add_argument("--deadline", type=float, default=3600, help="seconds before unfinished variants are stopped")
    ap.add_argument("--workdir", type=Path, default=RUNS)
    ap.add_argument("--results", type=Path, default=RESULTS)
    args, passthrough = ap.parse_known_args()  # the rest (--device, --data, --limit) goes to each training.train
    variants = [v.split(",") for v in args.variant]
    for v in variants:
        parse_overrides(v)  # fail here, before anything starts, on a typo in any variant
    if len({variant_name(v) for v in variants}) < len(variants):
        raise SystemExit("two --variant values are the same")
    if run(args.model, variants, args.deadline, args.workdir, args.results, passthrough) is None:
        raise SystemExit("no variant finished before the deadline")


if __name__ == "__main__":
    main()
