"""The benchmark scripts report what they measured: the fuzz cases that ran, the machine they ran on."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT
from tests.stack.test_fuzz import FUZZ_TESTS


def test_fuzz_benchmark_reports_the_requests_it_sent(tmp_path):
    out = tmp_path / "fuzz.json"
    proc = subprocess.run([sys.executable, "-m", "bench.fuzz", "--cases", "6", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())
    sent = result["status_codes_per_test"]
    assert set(sent) == set(FUZZ_TESTS)
    assert result["cases"] == sum(sum(codes.values()) for codes in sent.values()) > 0
    assert not any("429" in codes for codes in sent.values())  # none turned away by the front door
    assert result["no_5xx_and_healthy_after"] is True


def test_serving_benchmark_names_the_machine_it_ran_on(monkeypatch):
    """bench/serving.py wrote "no GPU" whatever the machine; a GPU host must be named as one."""
    import torch

    from bench import serving

    assert serving.device().endswith(", no GPU") == (not torch.cuda.is_available())
    # This machine has no GPU: stand in for one to check that a GPU host is reported as such.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "NVIDIA H100 80GB HBM3")
    assert "no GPU" not in serving.device() and "NVIDIA H100" in serving.device()


def test_the_bank_benchmark_imports_takes_up_and_queries_a_bank():
    from bench.pdq import IMPORT_ROWS, bank_of

    result = bank_of(IMPORT_ROWS + 500)  # two imports, the second a partial one
    assert result["hashes"] == result["taken_up"] == IMPORT_ROWS + 500
    assert 0 < result["index_mb"] < result["hashes"] * 100 / 2**20  # columns, not a dict per entry
    assert result["ms_per_query"] > 0
