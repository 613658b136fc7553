"""Stand-ins for a Triton server's gRPC client, for tests with no server (no torch, no project modules: the gateway
venv test runs tests that use them with gateway/requirements.txt alone)."""
from __future__ import annotations

import time
import types

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

RULE = ('{"threshold": 0.5, "unsure_margin": 0.1, "max_detail_lost": 8.0, "max_side": 128, '
        '"confidence": {"native": 0.9, "resized": 0.9}}')


def config(name: str = "m", max_batch: int = 8, classes: str = "REAL,FAKE", **params: str) -> mc.ModelConfig:
    """A model config as the exporter writes it."""
    cfg = mc.ModelConfig(name=name, max_batch_size=max_batch)
    cfg.input.add(name="INPUT__0", data_type=mc.TYPE_UINT8, dims=[32, 32, 3])
    cfg.output.add(name="OUTPUT__0", data_type=mc.TYPE_FP32, dims=[2])
    for key, value in {"classes": classes, **params}.items():
        cfg.parameters[key].string_value = value
    return cfg


class FakeTriton:
    """Stands in for the gRPC client: one model per config, each answering P(FAKE) = `p` after `delay_s`."""

    def __init__(self, *configs: mc.ModelConfig, p: float = 0.9, delay_s: float = 0.0):
        self.configs, self.p, self.delay_s = {c.name: c for c in configs}, p, delay_s
        self.calls: list[tuple[str, int]] = []  # (model, images) of each infer

    def get_model_repository_index(self, **_):
        return {"models": [{"name": n} for n in self.configs]}

    def get_model_config(self, model, **_):
        return types.SimpleNamespace(config=self.configs[model])

    def is_server_live(self, **_):
        return True

    def is_model_ready(self, model, **_):
        return True

    def infer(self, model, inputs, outputs=None, **_):
        time.sleep(self.delay_s)
        n = inputs[0].shape()[0]
        self.calls.append((model, n))
        fake = self.configs[model].parameters["classes"].string_value.split(",").index("FAKE")
        row = np.full(2, 1 - self.p, dtype=np.float32)
        row[fake] = self.p
        return types.SimpleNamespace(as_numpy=lambda _: np.tile(row, (n, 1)),
                                     get_response=lambda: types.SimpleNamespace(model_version="3"))
