"""The in-process backend: the model repository's TorchScript files, called directly.

What Triton serves (<model>/1/model.pt, uint8 HWC pixels in, the contract's output out), for training,
evaluation and the benchmarks' ceiling. The only module of the core that imports torch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fakelens.backends import Answer, FanOut, Stopwatch, chunks
from fakelens.contract import read_repository

VERSION = "1"  # the version folder Triton serves; the exporter writes only this one


class TorchScript:
    """Every model of a repository in this process. `batch_size`: images per call (default: each model's
    max batch, as Triton would send them)."""

    def __init__(self, repository: Path, batch_size: int | None = None):
        self.contracts = read_repository(repository)
        self.batch_size = batch_size
        self.models = {name: torch.jit.load(str(repository / name / VERSION / "model.pt"), map_location="cpu").eval()
                       for name in self.contracts}

    def answer(self, model: str, pixels: np.ndarray) -> Answer:
        """P(FAKE) for each image of a uint8 [N, 32, 32, 3] batch."""
        clock, c, net = Stopwatch(), self.contracts[model], self.models[model]
        with torch.inference_mode():
            out = [net(torch.from_numpy(chunk)).numpy()[:, c.fake_index]
                   for chunk in chunks(pixels, self.batch_size or c.max_batch_size)]
        return Answer(np.concatenate(out), clock.ms, VERSION, c.parameters)

    def fan_out(self, pixels: np.ndarray) -> FanOut:
        """Every model, one after another (they share this process's threads)."""
        return FanOut({m: self.answer(m, pixels) for m in self.models}, {})

    def readiness(self) -> dict[str, bool]:
        """Every model loaded in this process is ready."""
        return {m: True for m in self.models}
