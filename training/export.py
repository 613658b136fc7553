"""Export trained models to TorchScript plus the Triton config that states their contract.

    python -m training.export                 # all models found in training/runs
    python -m training.export --model resnet50

The contract is written here, once, into each config.pbtxt; the serving side
(the python-backend twin, the gateway) reads it from there or from Triton.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from training import data
from training.models import MODELS
from training.nets import Servable
from training.paths import REPOSITORY, RUNS

INPUT = ("INPUT__0", mc.TYPE_UINT8, [32, 32, 3])  # RGB pixels, HWC, as Pillow decodes them
OUTPUT = ("OUTPUT__0", mc.TYPE_FP32, [2])  # calibrated [P(REAL), P(FAKE)]
MAX_BATCH = 64
PARITY_TOLERANCE = 1e-5


def model_config(name: str, kind: int = mc.ModelInstanceGroup.KIND_GPU) -> mc.ModelConfig:
    """The canonical config: the stock Triton image serving TorchScript on a GPU.

    With KIND_CPU it is configs/cpu.pbtxt, which `tritonserver --model-config-name=cpu`
    picks on a Docker host without a GPU (docker-compose.cpu.yml).
    """
    cfg = mc.ModelConfig(name=name, platform="pytorch_libtorch", max_batch_size=MAX_BATCH)
    cfg.input.add(name=INPUT[0], data_type=INPUT[1], dims=INPUT[2])
    cfg.output.add(name=OUTPUT[0], data_type=OUTPUT[1], dims=OUTPUT[2])
    cfg.dynamic_batching.preferred_batch_size.extend([8, 32, MAX_BATCH])
    cfg.dynamic_batching.max_queue_delay_microseconds = 500
    cpu_instances = getattr(MODELS[name], "CPU_INSTANCES", 1)
    cfg.instance_group.add(count=cpu_instances if kind == mc.ModelInstanceGroup.KIND_CPU else 1, kind=kind)
    warm = cfg.model_warmup.add(name="zeros", batch_size=1)
    warm.inputs[INPUT[0]].CopyFrom(mc.ModelWarmup.Input(data_type=INPUT[1], dims=INPUT[2], zero_data=True))
    cfg.parameters["classes"].string_value = ",".join(data.CLASSES)  # order of OUTPUT__0
    return cfg


def parity_inputs(n: int = 32) -> torch.Tensor:
    """Random pixels plus the extremes: what the traced graph must agree on."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    x[0], x[1] = 0, 255
    return torch.from_numpy(x)


def export(name: str, workdir: Path = RUNS, repository: Path = REPOSITORY) -> float:
    """Trace <workdir>/<name>/final.pt into <repository>/<name>/1/model.pt. Returns the parity error."""
    final = torch.load(workdir / name / "final.pt", map_location="cpu", weights_only=True)
    net = MODELS[name].build()
    net.load_state_dict(final["state_dict"])
    model = Servable(net, final["temperature"], final["flip_tta"]).eval()
    example = parity_inputs()
    with torch.no_grad():
        traced = torch.jit.trace(model, example[:4])
        err = float((traced(example) - model(example)).abs().max())
    if err > PARITY_TOLERANCE:
        raise RuntimeError(f"{name}: TorchScript differs from eager by {err:.2e} > {PARITY_TOLERANCE}")
    out = repository / name
    (out / "1").mkdir(parents=True, exist_ok=True)
    traced.save(str(out / "1" / "model.pt"))
    (out / "config.pbtxt").write_text(text_format.MessageToString(model_config(name)))
    (out / "configs").mkdir(exist_ok=True)
    cpu = model_config(name, mc.ModelInstanceGroup.KIND_CPU)
    (out / "configs" / "cpu.pbtxt").write_text(text_format.MessageToString(cpu))
    print(f"{name}: exported to {out} (TorchScript vs eager max abs diff {err:.1e})")
    return err


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(MODELS), action="append", help="default: every trained model")
    ap.add_argument("--workdir", type=Path, default=RUNS)
    ap.add_argument("--repository", type=Path, default=REPOSITORY)
    args = ap.parse_args()
    names = args.model or [n for n in MODELS if (args.workdir / n / "final.pt").is_file()]
    if not names:
        raise SystemExit(f"nothing to export: no final.pt under {args.workdir} (run `make train` first)")
    for name in names:
        export(name, args.workdir, args.repository)


if __name__ == "__main__":
    main()
