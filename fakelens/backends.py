"""Model backends: one small interface, two ways of asking the models.

- fakelens.triton.Triton: Triton Inference Server over gRPC (the gateway);
- fakelens.torchscript.TorchScript: the model repository's TorchScript files in this process (training,
  evaluation, the benchmarks' ceiling).

Both read each model's contract (fakelens.contract) and hand back every answer with the parameters it was
given under, from which the judge reads the verdict rule.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class ModelError(RuntimeError):
    """A model could not answer. `reason` is a metric label: triton_unavailable, timeout or model_error."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Answer:
    """One model's answer to a batch."""
    p_fake: np.ndarray  # float [N]
    latency_ms: float  # wall time of the whole call, every chunk of the batch included
    version: str  # the model version that answered
    parameters: dict[str, str]  # of the contract it answered under (its weight and the verdict rule)


@dataclass(frozen=True)
class FanOut:
    """Every model's answer to one batch, or why it gave none."""
    answers: dict[str, Answer]
    errors: dict[str, ModelError]


class Backend(Protocol):
    """What the judge needs of a way to ask the models."""
    def fan_out(self, pixels: np.ndarray) -> FanOut:
        """Ask every model about a uint8 [N, 32, 32, 3] batch."""

    def readiness(self) -> dict[str, bool]:
        """{model: ready}; raises ModelError when the backend itself cannot be reached."""


def chunks(pixels: np.ndarray, size: int) -> Iterator[np.ndarray]:
    """The batch in contiguous pieces of at most `size` images (a model's max batch)."""
    size = max(size, 1)
    for at in range(0, len(pixels), size):
        yield np.ascontiguousarray(pixels[at:at + size])


class Stopwatch:
    """Wall time since it was made, in milliseconds."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    @property
    def ms(self) -> float:
        """Milliseconds since the stopwatch was made."""
        return (time.perf_counter() - self._start) * 1000
