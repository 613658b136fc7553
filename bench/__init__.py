"""Serving benchmarks: `make bench`, `make soak`, `make chaos`, `make fuzz`."""
from stack.launch import ROOT

RESULTS = ROOT / "bench" / "results"  # committed JSON and PNG figures
