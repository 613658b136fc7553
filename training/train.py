"""Train one or all models, then calibrate each on the validation split.

    python -m training.train                       # all three
    python -m training.train --model baseline_cnn  # one
    python -m training.train --model baseline_cnn --limit 400 --set epochs=1 --workdir /tmp/x  # smoke run
    python -m training.train --model resnet50 --set shift=4 --set lr=2e-3  # a recipe variant
    python -m training.train --model tuned_cnn --init model_repository --set epochs=3 --set degrade=0.5
                                                   # fine-tune the served weights on degraded images

Writes <workdir>/<model>/{checkpoint.pt, log.jsonl, final.pt} and
<results>/<model>/train.json (history, time, device, temperature, ECE).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from training import data
from training.calibrate import fit_temperature, nll, p_fake
from training.loop import Recipe, fit, pick_device, predict_logits
from training.metrics import binary_metrics, expected_calibration_error
from training.models import MODELS
from training.paths import CACHE, REPOSITORY, RESULTS, RUNS

# `--finetune`: start from the served weights and train with part of every batch degraded the
# ways real images are (degrade.py), at a lower peak learning rate. Long enough for the one-cycle
# schedule to anneal back to the clean score: 4 / 4 epochs cost the CNNs 0.003 and 0.006 of clean
# test F1, 12 / 10 epochs cost them 0.0001 and 0.0024. ResNet-50 (on a GPU, about 15 s an epoch;
# 9 minutes on 2 cores): 12 epochs at 1e-3 with half degraded cost 0.0039 of test F1; 18 epochs
# with 35% degraded is the committed run (training/README.md).
FINETUNE = {"baseline_cnn": {"epochs": 12, "lr": 0.03, "degrade": 0.5},
            "tuned_cnn": {"epochs": 10, "lr": 0.04, "degrade": 0.5},
            "resnet50": {"epochs": 18, "lr": 1e-3, "batch_size": 512, "degrade": 0.35}}


def parse_overrides(pairs: list[str]) -> dict:
    """["lr=2e-3", "flip=false"] -> {"lr": 0.002, "flip": False}, typed by the Recipe's own defaults."""
    fields = {f.name: type(f.default) for f in dataclasses.fields(Recipe)}
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--set {pair!r}: expected KEY=VALUE with KEY one of {', '.join(fields)}")
        kind = fields[key]
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise SystemExit(f"--set {pair!r}: expected true or false")
            out[key] = value.lower() in ("true", "1")
        else:
            try:
                out[key] = kind(value)
            except ValueError:
                raise SystemExit(f"--set {pair!r}: {value!r} is not a {kind.__name__}") from None
    return out


def served_weights(net: torch.nn.Module, path: Path) -> None:
    """Load the weights of a served TorchScript file (nets.Servable) into `net`, to fine-tune from them."""
    served = torch.jit.load(str(path), map_location="cpu").state_dict()
    net.load_state_dict({k.removeprefix("net."): v for k, v in served.items() if k.startswith("net.")})


def train_one(name: str, ds: data.Cifake, device: torch.device, workdir: Path, results: Path,
              overrides: dict | None = None, init: Path | None = None) -> dict:
    spec = MODELS[name]
    recipe = dataclasses.replace(spec.recipe(), **(overrides or {}))
    net = spec.build()
    if init:
        served_weights(net, init / name / "1" / "model.pt")
    run_dir = workdir / name
    out = fit(net, ds.train, ds.val, recipe, device, run_dir)

    calibrate_start = time.time()
    # Serve on the image and its mirror (nets.Servable) when that fits validation better once calibrated.
    views = {tta: predict_logits(net, ds.val, device, flip_tta=tta) for tta in (False, True)}
    temps = {tta: fit_temperature(v, ds.val.y) for tta, v in views.items()}
    flip_tta = nll(views[True], ds.val.y, temps[True]) < nll(views[False], ds.val.y, temps[False])
    logits, temperature = views[flip_tta], temps[flip_tta]
    net.cpu().eval()
    # Weights and the serving recipe, not the pickled module: export rebuilds the net from training.models.
    torch.save({"state_dict": net.state_dict(), "temperature": temperature, "flip_tta": flip_tta},
               run_dir / "final.pt")
    summary = {
        "model": name,
        "recipe": dataclasses.asdict(recipe),
        "fine_tuned_from": str(init / name / "1" / "model.pt") if init else None,
        "parameters": sum(p.numel() for p in net.parameters()),
        "train_seconds": round(out["train_seconds"], 1),
        "wall_seconds": round(out["wall_seconds"] + time.time() - calibrate_start, 1),
        "device": out["device"],
        "temperature": temperature,
        "flip_tta": flip_tta,
        "val_f1_served": binary_metrics(ds.val.y, p_fake(logits, temperature))["f1"],
        "val_ece_before": expected_calibration_error(ds.val.y, p_fake(logits)),
        "val_ece_after": expected_calibration_error(ds.val.y, p_fake(logits, temperature)),
        "train_images": len(ds.train),
        "val_images": len(ds.val),
        "dropped_duplicates": ds.dropped,
        "history": out["history"],
    }
    (results / name).mkdir(parents=True, exist_ok=True)
    (results / name / "train.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{name}: val F1 {out['history'][-1]['val_f1']:.4f} ({summary['val_f1_served']:.4f} as served), "
          f"{summary['train_seconds']} s training, "
          f"T={temperature:.3f}, val ECE {summary['val_ece_before']:.4f} -> {summary['val_ece_after']:.4f}")
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(MODELS), action="append",
                    help="model to train (repeatable; default: all)")
    ap.add_argument("--data", help="folder with the CIFAKE archives (default: $FAKELENS_DATA or ../shared/data)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override one field of the model's recipe (repeatable), e.g. epochs=1")
    ap.add_argument("--limit", type=int, help="decode only this many train images (quick runs)")
    ap.add_argument("--cache", type=Path, default=CACHE, help="where the decoded arrays are kept")
    ap.add_argument("--workdir", type=Path, default=RUNS, help="checkpoints and final weights")
    ap.add_argument("--results", type=Path, default=RESULTS, help="where train.json goes")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--init", type=Path, metavar="REPOSITORY",
                    help="start from the weights served in this model repository (fine-tuning)")
    ap.add_argument("--finetune", action="store_true",
                    help="fine-tune on degraded images: --init model_repository plus each model's FINETUNE recipe")
    args = ap.parse_args()

    overrides = parse_overrides(args.set)
    device = pick_device(args.device)
    start = time.time()
    ds = data.load(args.data, cache_dir=args.cache, limit=args.limit)
    print(f"data: {len(ds.train)} train / {len(ds.val)} val images "
          f"in {time.time() - start:.1f} s; dropped duplicates {ds.dropped}")
    for name in args.model or list(MODELS):
        if args.finetune:
            train_one(name, ds, device, args.workdir, args.results, {**FINETUNE[name], **overrides},
                      args.init or REPOSITORY)
        else:
            train_one(name, ds, device, args.workdir, args.results, overrides, args.init)


if __name__ == "__main__":
    main()
