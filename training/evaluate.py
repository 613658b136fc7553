"""Evaluate the exported TorchScript files on the full official test split.

    python -m training.evaluate   # -> training/results/benchmark.json + PNG plots

It scores exactly what Triton serves (model_repository/<name>/1/model.pt, fed uint8 HWC pixels,
through the core's in-process backend), adds the ensemble (the verdict rule's weighted mean), and
merges in each model's training record (train.json). It fits the verdict rule
(training/rule.py) and writes it into the model repository, then runs the
real-world benchmark (training/realworld.py) under that rule.
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fakelens.images import SIZE
from fakelens.torchscript import TorchScript
from fakelens.verdict import NATIVE, RESIZED, Rule
from training import data, degrade, plots, realworld, rule
from training.loop import pick_device
from training.metrics import binary_metrics
from training.paths import REPOSITORY, RESULTS

NOTES = [
    "All figures are on the full official CIFAKE test split (20,000 images), which no model, "
    "calibration or hyperparameter search saw.",
    "Validation: 10,000 images carved (stratified, fixed seed) from the official train split.",
    "Exact duplicates removed from train and validation: {train_also_in_test} train images byte-identical "
    "to test images and {train_repeats} repeated copies within train. The test split is kept whole.",
    "Ensemble: weighted mean of the calibrated P(FAKE), FAKE when >= 0.5; the weights minimise log-loss "
    "on the validation split together with a degraded copy of it (each image given one random degradation "
    "of training/degrade.py), so the verdict leans on the models that hold up; grid over the simplex, step 0.05.",
]
ENLARGED_TEST_IMAGES = 1000  # x 15 upscales: the "resized" confidence is measured on 15,000 uploads


def p_fake(backend: TorchScript, model: str, x: np.ndarray) -> np.ndarray:
    """One model's P(FAKE) for every image, a progress bar over its batches."""
    size = backend.batch_size
    return np.concatenate([backend.answer(model, x[at:at + size]).p_fake
                           for at in tqdm(range(0, len(x), size), desc=model, unit="batch", leave=False)])


def ensemble_weights(val_probs: dict[str, np.ndarray], y: np.ndarray, step: float = 0.05) -> dict[str, float]:
    """Weights on the simplex that minimise validation log-loss of the weighted mean P(FAKE)."""
    names = list(val_probs)
    p = np.clip(np.stack([val_probs[n] for n in names]), 1e-7, 1 - 1e-7)
    n_steps = round(1 / step)
    best, best_loss = None, np.inf
    for combo in itertools.product(range(n_steps + 1), repeat=len(names) - 1):
        if sum(combo) > n_steps:
            continue
        w = np.array([*combo, n_steps - sum(combo)]) / n_steps
        q = w @ p
        loss = -np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))
        if loss < best_loss - 1e-12:
            best, best_loss = w, loss
    return {n: round(float(v), 4) for n, v in zip(names, best)}


def markdown_table(table: dict) -> str:
    """The README's model table, from benchmark.json."""
    lines = ["| model | F1 | precision | recall | accuracy | ROC-AUC | ECE | parameters | training | device |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in table["models"].items():
        train = f"{r['train_seconds'] / 60:.1f} min" if r.get("train_seconds") else "-"
        if r.get("epochs"):
            train += f", {r['epochs']} epochs"
        if r.get("fine_tuned"):
            train = "fine-tune: " + train
        lines.append(f"| {name} | {r['f1']:.4f} | {r['precision']:.4f} | {r['recall']:.4f} | {r['accuracy']:.4f} | "
                     f"{r['roc_auc']:.4f} | {r['ece']:.4f} | {r.get('parameters', 0):,} | {train} | "
                     f"{r.get('device', '-')} |")
    return "\n".join(lines) + "\n"


def evaluate(repository: Path, results: Path, test: data.Split, dropped: dict, val: data.Split) -> dict:
    backend = TorchScript(repository, batch_size=realworld.BATCH)
    names = list(backend.contracts)
    # Validation as uploaded, then degraded: the ensemble weights are fitted on both (NOTES).
    fit_x = np.concatenate([val.x, degrade.augment(val.x, np.random.default_rng(0), 1.0)])
    # Test images enlarged as people enlarge them: what a "resized" verdict's confidence is measured on.
    enlarged = rule.enlarged(test.x, test.y, n=ENLARGED_TEST_IMAGES, seed=1)
    rows, probs, fit_probs, enlarged_probs = {}, {}, {}, {}
    for name in names:
        fit_probs[name] = p_fake(backend, name, fit_x)
        enlarged_probs[name] = p_fake(backend, name, enlarged["pixels"])
        start = time.time()
        probs[name] = p_fake(backend, name, test.x)
        row = binary_metrics(test.y, probs[name])
        row["test_seconds"] = round(time.time() - start, 1)
        record = results / name / "train.json"
        if record.is_file():
            train = json.loads(record.read_text())
            row.update({k: train[k] for k in ("parameters", "train_seconds", "wall_seconds", "device", "temperature",
                                              "val_ece_before", "val_ece_after", "train_images", "val_images", "flip_tta")})
            row["epochs"] = train["recipe"]["epochs"]
            row["fine_tuned"] = bool(train.get("fine_tuned_from"))  # the time and epochs are the fine-tune's
            row["val_f1"] = train["history"][-1]["val_f1"]
        rows[name] = row
        print(f"{name}: F1 {row['f1']:.4f}  acc {row['accuracy']:.4f}  AUC {row['roc_auc']:.4f}")
    # The verdict rule is written for any repository, one model or several: the gateway needs it to answer.
    weights = ensemble_weights(fit_probs, np.concatenate([val.y, val.y])) if len(names) > 1 else {names[0]: 1.0}
    unfitted = Rule(weights, rule.THRESHOLD, 0.0, 0.0, rule.MAX_SIDE, {NATIVE: 0.0, RESIZED: 0.0})
    ens = unfitted.combine(probs)  # the served ensemble: the rule's weighted mean
    margin = rule.fit_margin(unfitted.combine({n: fit_probs[n][:len(val)] for n in names}))  # on clean validation only
    max_detail = rule.fit_max_detail_lost(val.x, val.y)
    draft = Rule(weights, rule.THRESHOLD, margin, max_detail, rule.MAX_SIDE, {NATIVE: 0.0, RESIZED: 0.0})
    measured = {NATIVE: rule.decided(rule.verdicts(draft, probs, np.full(len(test), SIZE), np.zeros(len(test))), test.y),
                RESIZED: rule.decided(rule.verdicts(draft, enlarged_probs, enlarged["side"], enlarged["detail_lost"]),
                                      enlarged["y"])}
    fitted = rule.write(repository, weights, margin, max_detail, {k: m["decided_accuracy"] for k, m in measured.items()})
    for kind, m in measured.items():
        print(f"verdict rule, {kind} uploads ({m['images']:,} test images): UNSURE {m['unsure_rate']:.2%}, "
              f"decided right {m['decided_accuracy']:.4f}")
    print(f"UNSURE within {fitted.unsure_margin:g} of 0.5; domain: 32x32, or up to {fitted.max_side} px with at most "
          f"{fitted.max_detail_lost:g} grey levels of detail lost and every model on the same side")
    if len(names) > 1:
        rows["ensemble"] = binary_metrics(test.y, ens)
        rows["ensemble"].update({"members": names, "weights": weights,
                                 "rule": "weighted mean of calibrated P(FAKE) >= 0.5, weights fitted on validation; "
                                         f"UNSURE within {fitted.unsure_margin:g} of 0.5",
                                 "unsure_margin": fitted.unsure_margin, "max_detail_lost": fitted.max_detail_lost,
                                 "max_side": fitted.max_side,
                                 "unsure_rate": measured[NATIVE]["unsure_rate"],
                                 "decided_accuracy": measured[NATIVE]["decided_accuracy"],
                                 "enlarged": measured[RESIZED],
                                 "train_seconds": sum(rows[n].get("train_seconds", 0) for n in names),
                                 "parameters": sum(rows[n].get("parameters", 0) for n in names)})
        probs["ensemble"] = ens
        print(f"ensemble: F1 {rows['ensemble']['f1']:.4f}  acc {rows['ensemble']['accuracy']:.4f}")
    table = {"test_images": len(test), "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "notes": [n.format(**dropped) for n in NOTES], "models": rows}
    results.mkdir(parents=True, exist_ok=True)
    (results / "benchmark.json").write_text(json.dumps(table, indent=2) + "\n")
    (results / "benchmark.md").write_text(markdown_table(table))
    plots.all_plots(table, probs, test.y, results)
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="folder with the CIFAKE archives (default: $FAKELENS_DATA or ../shared/data)")
    ap.add_argument("--repository", type=Path, default=REPOSITORY)
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--realworld", help="the real-world set (default: $FAKELENS_REALWORLD or ../shared/realworld-dev)")
    ap.add_argument("--limit", type=int, help="decode only this many images (quick runs)")
    args = ap.parse_args()
    if args.limit and (args.results.resolve() == RESULTS.resolve() or args.repository.resolve() == REPOSITORY.resolve()):
        # A quick run would replace the committed table and the committed verdict rule with figures from a few images.
        ap.error("--limit needs --results and --repository outside the committed ones (e.g. a copy in /tmp)")
    pick_device("cpu")
    ds = data.load(args.data, limit=args.limit, with_test=True)
    evaluate(args.repository, args.results, ds.test, ds.dropped, ds.val)
    realworld.evaluate(realworld.realworld_dir(args.realworld), args.repository, args.results)


if __name__ == "__main__":
    main()
