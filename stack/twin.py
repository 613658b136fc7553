"""Derive the CPU twin of the canonical model repository.

The canonical `model_repository/` targets the stock GPU image (pytorch_libtorch);
each model's configs/cpu.pbtxt is the same model served on CPU by that image.
The pip-installed tritonserver has only the python backend, so the twin takes the
CPU config (its instances, batching, warm-up and parameters), swaps the platform for
the python backend, links the same model.pt, and checks the contract against the
canonical config.pbtxt.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

TWIN_MODEL = Path(__file__).resolve().parent / "twin_model.py"


class TwinMismatch(RuntimeError):
    """The served model does not match its canonical config."""


def read_config(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def contract(cfg: mc.ModelConfig) -> dict:
    """What clients depend on: names, dtypes, dims and batch size."""
    def tensors(items):
        return [(t.name, mc.DataType.Name(t.data_type), list(t.dims)) for t in items]

    return {"name": cfg.name, "max_batch_size": cfg.max_batch_size,
            "input": tensors(cfg.input), "output": tensors(cfg.output)}


def twin_config(cpu: mc.ModelConfig, canonical: mc.ModelConfig, threads: int = 1) -> mc.ModelConfig:
    twin = mc.ModelConfig()
    twin.CopyFrom(cpu)
    twin.ClearField("platform")
    twin.backend = "python"
    for group in twin.instance_group:
        group.kind = mc.ModelInstanceGroup.KIND_CPU
    twin.parameters["torch_threads"].string_value = str(threads)
    if contract(twin) != contract(canonical):
        raise TwinMismatch(f"{canonical.name}: twin contract {contract(twin)} != canonical {contract(canonical)}")
    return twin


def derive(canonical: Path, out: Path, threads: int = 1) -> None:
    """Write the twin repository to `out`: each model of `canonical` on the python backend."""
    models = sorted(p.parent for p in canonical.glob("*/config.pbtxt"))
    if not models:
        raise FileNotFoundError(f"no models in {canonical} (expected <name>/config.pbtxt)")
    if out.exists():
        shutil.rmtree(out)
    for model in models:
        cfg = read_config(model / "config.pbtxt")
        cpu = read_config(model / "configs" / "cpu.pbtxt") if (model / "configs" / "cpu.pbtxt").is_file() else cfg
        if cfg.name != model.name:
            raise TwinMismatch(f"{model}/config.pbtxt names the model {cfg.name!r}, not {model.name!r}")
        weights = model / "1" / "model.pt"
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} is missing (run `make export`)")
        version = out / model.name / "1"
        version.mkdir(parents=True)
        (version / "model.pt").symlink_to(weights.resolve())
        shutil.copy(TWIN_MODEL, version / "model.py")
        (out / model.name / "config.pbtxt").write_text(text_format.MessageToString(twin_config(cpu, cfg, threads)))
