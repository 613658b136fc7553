"""Where training reads and writes, stated once; every command takes its own flag to override them."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPOSITORY = ROOT / "model_repository"  # what Triton serves: TorchScript files, config.pbtxt, the verdict rule
RUNS = ROOT / "training" / "runs"  # checkpoints and final weights (not committed)
RESULTS = ROOT / "training" / "results"  # train records, benchmark tables and plots (committed)
CACHE = ROOT / ".cache"  # decoded CIFAKE arrays
DATA = ROOT.parent / "shared" / "data"  # the CIFAKE archives; FAKELENS_DATA overrides
REALWORLD = ROOT.parent / "shared" / "realworld-dev"  # the real-world dev set; FAKELENS_REALWORLD overrides
