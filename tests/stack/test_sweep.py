"""training.sweep: real training processes side by side, a deadline, and the pick by validation F1."""
from __future__ import annotations

import json
import time

import torch

from training import sweep


def test_sweep_keeps_the_best_finished_variant_and_stops_the_rest(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKELENS_THREADS", "1")  # three trainings share the CI machine's cores
    # On 400 images one epoch (two steps) learns next to nothing; twenty learn something, in about 30 s on
    # a 2-core AVX2 machine (thirty came within a second of the deadline there).
    # A fresh cache: all three decode it at once, as a sweep's first run does.
    variants = [["epochs=1"], ["epochs=20", "seed=1"], ["epochs=100000"]]
    start = time.time()
    best = sweep.run("baseline_cnn", variants, 45, tmp_path / "runs", tmp_path / "results",
                     ["--device", "cpu", "--limit", "400", "--cache", str(tmp_path / "cache")])
    assert 45 <= time.time() - start < 100  # the endless variant held the sweep to its deadline, then was stopped

    done = {n: json.loads((tmp_path / "runs" / "sweep" / n / "results" / "baseline_cnn" / "train.json").read_text())
            for n in ("epochs1", "epochs20_seed1")}
    assert done["epochs20_seed1"]["val_f1_served"] > done["epochs1"]["val_f1_served"]
    assert best == done["epochs20_seed1"]
    assert not (tmp_path / "runs" / "sweep" / "epochs100000" / "results" / "baseline_cnn" / "train.json").exists()

    installed = json.loads((tmp_path / "results" / "baseline_cnn" / "train.json").read_text())
    assert installed == best
    final = torch.load(tmp_path / "runs" / "baseline_cnn" / "final.pt", weights_only=True)
    assert final["temperature"] == best["temperature"]
    logs = sorted(p.name for p in (tmp_path / "results" / "baseline_cnn" / "sweep").glob("*.jsonl"))
    assert logs == ["epochs1.jsonl", "epochs100000.jsonl", "epochs20_seed1.jsonl"]
