"""`make scan-check`: `fakelens scan` of CIFAKE test images, killed half-way and resumed.

    python -m bench.resume --images 2000

Starts a stack on free ports, writes the images to a folder, runs the client's scan, kills it
(SIGKILL) once about half the records are written, runs it again with --resume, and reports
the records, duplicates and missing files, and the accuracy of the models' combined P(FAKE)
at 0.5 (the benchmark table's ensemble accuracy) and of the decided verdicts.
Writes bench/results/resume.json.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import RESULTS
from bench.load import sample_test_images
from stack.launch import ROOT, UNLIMITED, Ports, Stack, free_ports


def scan(folder: Path, url: str, out: Path, resume: bool) -> subprocess.Popen:
    argv = [sys.executable, "-m", "fakelens_client.cli", "scan", str(folder), "--url", url, "--out", str(out)]
    return subprocess.Popen(argv + (["--resume"] if resume else []), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=RESULTS / "resume.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp) / "images", Path(tmp) / "scan.jsonl"
        folder.mkdir()
        labels = {}
        for name, raw, label in sample_test_images(args.images):
            path = folder / name.replace("/", "_")
            path.write_bytes(raw)
            labels[str(path)] = label
        stack = Stack(Ports(*free_ports(5)), run_dir=ROOT / ".run" / "resume", services=("triton", "gateway"),
                      limits=UNLIMITED).start()
        try:
            url = f"http://127.0.0.1:{stack.ports.gateway}"
            first = scan(folder, url, out, resume=False)
            while first.poll() is None and (not out.exists() or len(out.read_bytes().splitlines()) < args.images // 2):
                time.sleep(0.05)
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
            killed_at = len(out.read_bytes().splitlines())
            resumed = scan(folder, url, out, resume=True)
            resumed.wait()
        finally:
            stack.stop()
        recs = [json.loads(line) for line in out.read_text().splitlines()]
    paths = [r["path"] for r in recs]
    answered = [r for r in recs if not r.get("error")]
    right = [(r["prob_fake"] >= 0.5) == bool(labels[r["path"]]) for r in answered]
    decided = [(r["verdict"] == "FAKE") == bool(labels[r["path"]]) for r in answered if r["verdict"] != "UNSURE"]
    result = {"generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "images": len(labels),
              "records_when_killed": killed_at, "resume_exit_code": resumed.returncode, "records": len(recs),
              "duplicates": len(paths) - len(set(paths)), "missing": len(set(labels) - set(paths)),
              "errors": len(recs) - len(answered), "accuracy_at_0.5": round(sum(right) / len(right), 4),
              "unsure_rate": round(1 - len(decided) / len(answered), 4),
              "decided_accuracy": round(sum(decided) / len(decided), 4)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
