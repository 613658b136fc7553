"""What stands between the served ensemble and a CIFAKE F1 of 0.990, measured on validation only.

    python -m training.headroom   # -> training/results/headroom.json, headroom_wrong.png

The served models (model_repository/) and their served ensemble weights score the 10,000
validation images; the test split is not read. It reports each model's errors, how many
images every model gets wrong (no way of combining these three models fixes those), how many
errors an F1 of 0.990 allows, the ensemble's F1 at other thresholds, and the best F1 any
weighting of the three reaches: an optimistic ceiling for reweighting, since it is fitted and
scored on the same images; headroom_wrong.png shows the images every model gets wrong. It also
measures one lever that needs no training: averaging each model over one-pixel translations of
the image as well as its mirror (test-time augmentation).
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fakelens.torchscript import TorchScript
from training import data, plots, realworld, rule
from training.calibrate import fit_temperature, nll, p_fake
from training.evaluate import p_fake as served_p_fake
from training.loop import batches, pick_device, to_input
from training.metrics import binary_metrics
from training.nets import flip_averaged
from training.paths import REPOSITORY, RESULTS

TARGET_F1 = 0.990
GRID = 20  # weights in steps of 1/GRID
THRESHOLDS = (0.4, 0.45, 0.5, 0.55, 0.6)  # the served ensemble's F1 if FAKE began elsewhere than at 0.5
# (dy, dx): the image and its four one-pixel translations, borders reflected as in training's random translations
SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def best_weighting(p: np.ndarray, y: np.ndarray) -> tuple[float, list[float]]:
    """(F1, weights): the weighted mean of the rows of `p` with the best F1 at 0.5, over a simplex grid."""
    best = (0.0, [])
    for combo in itertools.product(range(GRID + 1), repeat=len(p) - 1):
        if sum(combo) <= GRID:
            w = np.array([*combo, GRID - sum(combo)]) / GRID
            f1 = binary_metrics(y, w @ p)["f1"]
            best = max(best, (f1, [round(float(v), 3) for v in w]))
    return best


def allowed_errors(y: np.ndarray, f1: float) -> int:
    """Errors an F1 of `f1` allows when they split evenly between misses and false alarms:
    with TP = positives - errors / 2, F1 = 2TP / (2TP + errors) = 1 - errors / (2 positives)."""
    return round(2 * int(y.sum()) * (1 - f1))


def errors(y: np.ndarray, p_fake: np.ndarray) -> int:
    """Images on the wrong side of the served threshold."""
    return int(((p_fake >= rule.THRESHOLD) != y.astype(bool)).sum())


@torch.inference_mode()
def translated_logits(net: torch.nn.Module, x: np.ndarray, desc: str, shifts=SHIFTS) -> np.ndarray:
    """[len(shifts), N, 2]: the net's logits averaged over each translation of the uint8 images `x` and its mirror."""
    def view(dy: int, dx: int) -> np.ndarray:
        return np.concatenate([flip_averaged(net, to_input(x[idx], torch.device("cpu"),
                                                           offsets=np.tile((dy, dx), (len(idx), 1)))).numpy()
                               for idx in batches(len(x), 500)])
    return np.stack([view(dy, dx) for dy, dx in tqdm(shifts, desc=f"{desc}: translations", unit="view", leave=False)])


def translation_tta(model: torch.jit.ScriptModule, val: data.Split, desc: str, shifts=SHIFTS) -> tuple[dict, np.ndarray]:
    """A served model's net averaged over the mirror of the image (as served) and, on top, over the mirrors of
    its translations by `shifts`; each view set recalibrated on validation. ({view set: F1, errors, NLL, passes
    per image}, calibrated P(FAKE) with every translation)."""
    views = translated_logits(model.net, val.x, desc, shifts)
    out = {}
    for name, used in (("flip (as served)", views[:1]), (f"flip x {len(shifts)} translations", views)):
        logits = np.mean(used, 0)
        t = fit_temperature(logits, val.y)
        p = p_fake(logits, t)
        out[name] = {"f1": round(binary_metrics(val.y, p)["f1"], 4),
                     "errors": errors(val.y, p),
                     "nll": round(nll(logits, val.y, t), 4), "passes_per_image": 2 * len(used)}
    return out, p


def headroom(repository: Path, val: data.Split, tta_models: list[str], grid: Path | None = None) -> dict:
    served = rule.load(repository)
    names = sorted(served.weights)
    backend = TorchScript(repository, batch_size=realworld.BATCH)
    p = np.stack([served_p_fake(backend, n, val.x) for n in names])
    wrong = (p >= rule.THRESHOLD) != val.y.astype(bool)
    ens = served.combine(dict(zip(names, p)))
    if grid:  # what no combination of these models fixes, to look at
        hopeless = np.flatnonzero(wrong.all(0))
        plots.image_grid(val.x[hopeless], [f"{data.CLASSES[val.y[i]]} {ens[i]:.2f}" for i in hopeless],
                         f"The {len(hopeless)} validation images every served model gets wrong "
                         "(true label, the served ensemble's P(FAKE))", grid)
    f1, weights = best_weighting(p, val.y)
    tta = {n: translation_tta(backend.models[n], val, n) for n in tta_models}
    translated = {n: report for n, (report, _) in tta.items()}
    if set(tta) == set(names):  # the served ensemble, every model averaged over the translations too
        q = sum(served.weights[n] * tta[n][1] for n in names)
        translated["served_ensemble"] = {"f1": round(binary_metrics(val.y, q)["f1"], 4),
                                         "errors": errors(val.y, q)}
    return {"validation_images": len(val),
            "models": {n: {"f1": round(binary_metrics(val.y, p[i])["f1"], 4), "errors": int(wrong[i].sum())}
                       for i, n in enumerate(names)},
            "served_ensemble": {"weights": served.weights, "f1": round(binary_metrics(val.y, ens)["f1"], 4),
                                "errors": errors(val.y, ens),
                                "f1_at_threshold": {str(t): round(binary_metrics(val.y, ens, t)["f1"], 4)
                                                    for t in THRESHOLDS}},
            "wrong_by_every_model": int(wrong.all(0).sum()),
            "wrong_by_every_model_by_true_label": {c: int((wrong.all(0) & (val.y == i)).sum())
                                                   for i, c in enumerate(data.CLASSES)},
            "wrong_by_two_or_more": int((wrong.sum(0) >= 2).sum()),
            "wrong_by_any": int(wrong.any(0).sum()),
            "best_weighting_on_validation": {"f1": round(f1, 4), "weights": dict(zip(names, weights))},
            "errors_allowed_at_target": {"target_f1": TARGET_F1, "errors": allowed_errors(val.y, TARGET_F1)},
            "translation_tta": translated}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="folder with the CIFAKE archives (default: $FAKELENS_DATA or ../shared/data)")
    ap.add_argument("--repository", type=Path, default=REPOSITORY)
    ap.add_argument("--out", type=Path, default=RESULTS / "headroom.json")
    ap.add_argument("--tta", nargs="*", default=["baseline_cnn", "tuned_cnn", "resnet50"],
                    help="models whose translation TTA is measured (all three: about 4 minutes of this 2-core CPU)")
    args = ap.parse_args()
    pick_device("cpu")
    report = headroom(args.repository, data.load(args.data).val, args.tta, args.out.with_name("headroom_wrong.png"))
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
