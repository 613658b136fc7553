"""One training loop for every model: CPU or CUDA, bf16 autocast where the device computes in it, seeded, resumable.

Everything lives in memory as uint8 arrays (see data.py), so a step is just
index -> normalise -> flip -> forward/backward; there is no DataLoader to tune.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from training import degrade
from training.data import Split
from training.metrics import binary_metrics
from training.nets import flip_averaged, normalise


@dataclass
class Recipe:
    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.05  # peak of the one-cycle schedule
    weight_decay: float = 5e-4
    label_smoothing: float = 0.05
    flip: bool = True  # horizontal flips keep the 8x8 JPEG grid aligned (32 is a multiple of 8)
    shift: int = 0  # random translation by up to this many pixels, reflect-padded; moves the JPEG grid,
    # yet 4 pixels lifted ResNet-50's validation F1 by ~0.007 (README's sweep)
    degrade: float = 0.0  # share of each batch given a random real-world degradation (degrade.py)
    optimizer: str = "sgd"  # "sgd" (nesterov) or "adamw"
    ema: float = 0.0  # per-step decay of an exponential moving average of the weights and BN statistics;
    # when set, the average is what is validated and kept (0: off)
    seed: int = 0


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        torch.set_num_threads(int(os.environ.get("FAKELENS_THREADS", os.cpu_count() or 1)))
    return torch.device(name)


def batches(n: int, size: int, rng: np.random.Generator | None = None):
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, size):
        yield order[start:start + size]


def to_input(x: np.ndarray, device: torch.device, flip: np.ndarray | None = None,
             offsets: np.ndarray | None = None) -> torch.Tensor:
    """uint8 NHWC batch -> normalised NCHW on `device`; `flip` [N] mirrors, `offsets` [N, 2] (dy, dx) translate."""
    t = normalise(torch.from_numpy(x).to(device))
    if flip is not None and flip.any():
        f = torch.from_numpy(flip).to(device)
        t[f] = t[f].flip(3)
    if offsets is not None:
        t = translate(t, torch.from_numpy(offsets).to(device))
    return t.contiguous(memory_format=torch.channels_last)


def translate(t: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Shift each image by its own (dy, dx), filling the border by reflection (airbench's batch crop)."""
    pad = int(offsets.abs().max())
    if pad == 0:
        return t
    n, _, h, w = t.shape
    padded = F.pad(t, (pad, pad, pad, pad), mode="reflect")
    rows = torch.arange(h, device=t.device) + pad - offsets[:, :1]  # [N, H]
    cols = torch.arange(w, device=t.device) + pad - offsets[:, 1:]  # [N, W]
    out = padded[torch.arange(n, device=t.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2)  # advanced indexing put the channel axis last


def augmentations(recipe: Recipe, n: int, rng: np.random.Generator) -> dict:
    """Per-image random flips and offsets for one batch, drawn from the epoch's seeded generator."""
    out = {}
    if recipe.flip:
        out["flip"] = rng.random(n) < 0.5
    if recipe.shift:
        out["offsets"] = rng.integers(-recipe.shift, recipe.shift + 1, size=(n, 2))
    return out


def bf16(device: torch.device) -> bool:
    """bf16 needs no loss scaling. On a CPU with native bf16 (AVX512-BF16) it doubles conv throughput; on one
    without (AVX2 only), oneDNN emulates it and a step of the baseline CNN was 11x slower than in float32."""
    return device.type == "cuda" or torch.cpu._is_avx512_bf16_supported()


def autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16(device))


@torch.no_grad()
def predict_logits(net: nn.Module, split: Split, device: torch.device, batch_size: int = 512,
                   flip_tta: bool = False) -> np.ndarray:
    net.eval()
    out = []
    for idx in batches(len(split), batch_size):
        x = to_input(split.x[idx], device)
        with autocast(device):
            out.append((flip_averaged(net, x) if flip_tta else net(x)).float().cpu())
    return torch.cat(out).numpy()


def make_optimizer(net: nn.Module, recipe: Recipe, steps: int):
    decay = [p for p in net.parameters() if p.ndim > 1]  # no weight decay on BN and biases
    rest = [p for p in net.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if recipe.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=recipe.lr)
    else:
        opt = torch.optim.SGD(groups, lr=recipe.lr, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=steps, pct_start=0.25)
    return opt, sched


def fit(net: nn.Module, train: Split, val: Split, recipe: Recipe, device: torch.device,
        run_dir: Path | None = None, on_epoch=None) -> dict:
    """Train `net` in place; returns {"history": [...], "train_seconds": s, "wall_seconds": s, "device": ...}.

    train_seconds counts the optimisation steps; wall_seconds adds validation.
    Both are kept in the checkpoint, so a resumed run reports its whole cost.

    With `run_dir`, writes log.jsonl (one line per epoch) and checkpoint.pt after
    every epoch, and resumes from that checkpoint if one is there.
    `on_epoch(epoch, val_f1)` lets Optuna prune; it may raise to stop the run.
    """
    torch.manual_seed(recipe.seed)
    net.to(device).to(memory_format=torch.channels_last)
    steps_per_epoch = -(-len(train) // recipe.batch_size)
    opt, sched = make_optimizer(net, recipe, recipe.epochs * steps_per_epoch)
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(recipe.ema), use_buffers=True) if recipe.ema else None
    kept = ema.module if ema else net  # what is validated, and what `net` holds when fit returns
    state = {"epoch": 0, "history": [], "train_seconds": 0.0, "wall_seconds": 0.0, "recipe": asdict(recipe)}
    ckpt = run_dir / "checkpoint.pt" if run_dir else None
    if ckpt and ckpt.is_file():
        saved = torch.load(ckpt, map_location=device, weights_only=False)
        if saved["recipe"] == asdict(recipe):
            net.load_state_dict(saved["net"])
            if ema:
                ema.load_state_dict(saved["ema"])
            opt.load_state_dict(saved["opt"])
            sched.load_state_dict(saved["sched"])
            state = saved["state"]
            print(f"resuming from {ckpt} after epoch {state['epoch']}")
        else:
            print(f"ignoring {ckpt}: it was made with another recipe")
    if run_dir and state["epoch"] == 0 and (run_dir / "log.jsonl").exists():
        (run_dir / "log.jsonl").unlink()  # a fresh run starts a fresh log

    for epoch in range(state["epoch"], recipe.epochs):
        rng = np.random.default_rng(recipe.seed * 1000 + epoch)  # per-epoch seed: resume replays exactly
        net.train()
        start = time.time()
        total, seen = 0.0, 0
        bar = tqdm(list(batches(len(train), recipe.batch_size, rng)), desc=f"epoch {epoch + 1}/{recipe.epochs}",
                   unit="batch", mininterval=2)
        for idx in bar:
            x = degrade.augment(train.x[idx], rng, recipe.degrade) if recipe.degrade else train.x[idx]
            x = to_input(x, device, **augmentations(recipe, len(idx), rng))
            y = torch.from_numpy(train.y[idx]).to(device)
            with autocast(device):
                loss = F.cross_entropy(net(x), y, label_smoothing=recipe.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if ema:
                ema.update_parameters(net)
            total += loss.item() * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{total / seen:.4f}", lr=f"{sched.get_last_lr()[0]:.4f}", refresh=False)
        state["train_seconds"] += time.time() - start

        logits = predict_logits(kept, val, device)
        m = binary_metrics(val.y, torch.softmax(torch.from_numpy(logits), 1)[:, 1].numpy())
        row = {"epoch": epoch + 1, "train_loss": total / seen,
               "val_loss": float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(val.y))),
               "val_accuracy": m["accuracy"], "val_f1": m["f1"], "seconds": state["train_seconds"]}
        state["history"].append(row)
        state["epoch"] = epoch + 1
        state["wall_seconds"] += time.time() - start
        print(json.dumps(row))
        if run_dir:
            run_dir.mkdir(parents=True, exist_ok=True)
            with open(run_dir / "log.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            torch.save({"net": net.state_dict(), "ema": ema.state_dict() if ema else None, "opt": opt.state_dict(),
                        "sched": sched.state_dict(), "state": state, "recipe": asdict(recipe)}, ckpt)
        if on_epoch:
            on_epoch(epoch + 1, m["f1"])
    if ema:
        net.load_state_dict(ema.module.state_dict())
    return {"history": state["history"], "train_seconds": state["train_seconds"], "wall_seconds": state["wall_seconds"],
            "device": (torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}")
            + ("" if bf16(device) else ", float32")}
