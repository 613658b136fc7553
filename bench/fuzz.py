"""`make fuzz`: the hypothesis fuzz tests (tests/stack/test_fuzz.py) at benchmark size, against a real stack.

    python -m bench.fuzz --cases 10000

Each fuzz test (tests.stack.test_fuzz.FUZZ_TESTS) is asked for an equal share of the cases; every response
must be < 500 with a JSON body, and the gateways must be healthy afterwards. The cases reported are
the requests the tests sent (some send two a case), counted by status code as they ran (hypothesis
may run fewer or more than asked).
Writes bench/results/fuzz.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import RESULTS
from stack.launch import ROOT
from tests.stack.test_fuzz import FUZZ_TESTS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--out", type=Path, default=RESULTS / "fuzz.json")
    args = ap.parse_args()
    per_test = -(-args.cases // len(FUZZ_TESTS))
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "sent.json"
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/stack/test_fuzz.py"],
                              cwd=ROOT, env={**os.environ, "FAKELENS_FUZZ_EXAMPLES": str(per_test),
                                             "FAKELENS_FUZZ_REPORT": str(report)})
        sent = json.loads(report.read_text()) if report.is_file() else {}
    result = {"generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "cases": sum(n for codes in sent.values() for n in codes.values()),
              "examples_asked_per_test": per_test, "status_codes_per_test": sent,
              # hypothesis stops a test at its first failing case: pass means every case was answered < 500
              "no_5xx_and_healthy_after": proc.returncode == 0, "seconds": round(time.time() - start)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
