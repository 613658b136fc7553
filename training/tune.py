"""Optuna search for tuned_cnn. Trials train on a fixed subset of the train split
for a short, fixed schedule and are scored by F1 on the validation split; the
test split is never loaded. The winner is then trained on the whole train split
(tuned_cnn.py).

Trials see each of their images 8 times, about half as often as the final run
does: with the earlier 3-pass trials the search picked recipes without flips
that then overfitted in the full-length run.

The study lives in SQLite, so an interrupted `make tune` resumes where it stopped.

    python -m training.tune --trials 24 --timeout 2400
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import optuna

from training import data
from training.loop import fit, pick_device
from training.models.baseline_cnn import build_from, recipe_from
from training.models.tuned_cnn import BASELINE, BEST

STUDY = "tuned_cnn"
SUBSET = 30_000  # images per trial: a trial takes 1-4 minutes on 2 cores
TRIAL_EPOCHS = 8


def suggest(trial: optuna.Trial) -> dict:
    # Widths and depths are capped so the final model trains in under ~25 minutes on 2 cores.
    return {
        "base_width": trial.suggest_categorical("base_width", [32, 40, 48]),
        "depth": trial.suggest_int("depth", 2, 3),
        "dropout": trial.suggest_float("dropout", 0.0, 0.4),
        "batch_size": trial.suggest_categorical("batch_size", [128, 256]),
        "lr": trial.suggest_float("lr", 0.02, 0.3, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-5, 2e-3, log=True),
        "label_smoothing": trial.suggest_float("label_smoothing", 0.0, 0.15),
        "flip": trial.suggest_categorical("flip", [True, False]),
    }


def objective(trial: optuna.Trial, ds: data.Cifake, device) -> float:
    p = suggest(trial)

    def report(epoch: int, f1: float) -> None:
        trial.report(f1, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()

    recipe = recipe_from(p, epochs=TRIAL_EPOCHS)
    result = fit(build_from(p), ds.train, ds.val, recipe, device, on_epoch=report)
    return result["history"][-1]["val_f1"]


def save_outputs(study: optuna.Study, out: Path) -> None:
    """best_params.json, trials.csv and Optuna's two standard plots, next to the study."""
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    out.mkdir(parents=True, exist_ok=True)
    best = study.best_trial
    (out / "best_params.json").write_text(json.dumps(
        {"trial": best.number, "val_f1": best.value, "params": best.params,
         "trials_complete": len([t for t in study.trials if t.state.name == "COMPLETE"]),
         "trials_pruned": len([t for t in study.trials if t.state.name == "PRUNED"])}, indent=2) + "\n")
    study.trials_dataframe().to_csv(out / "trials.csv", index=False)
    for name, plot in (("optimization_history", plot_optimization_history), ("param_importances", plot_param_importances)):
        try:
            ax = plot(study)
        except (ValueError, RuntimeError) as exc:  # importances need >= 2 complete trials
            print(f"skipped {name}: {exc}")
            continue
        ax.figure.set_size_inches(8, 5)
        ax.figure.tight_layout()
        ax.figure.savefig(out / f"{name}.png", dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="folder with the CIFAKE archives (default: $FAKELENS_DATA or ../shared/data)")
    ap.add_argument("--trials", type=int, default=16, help="total complete+pruned trials wanted in the study")
    ap.add_argument("--timeout", type=float, default=None, help="stop starting trials after this many seconds")
    ap.add_argument("--subset", type=int, default=SUBSET, help="train images per trial")
    ap.add_argument("--limit", type=int, default=None, help="decode only this many images (quick runs)")
    ap.add_argument("--out", type=Path, default=BEST.parent, help="where the study and its outputs go")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    device = pick_device(args.device)
    ds = data.load(args.data, limit=args.limit)
    rng = np.random.default_rng(1)
    ds.train = ds.train.take(rng.permutation(len(ds.train))[: args.subset])
    args.out.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=STUDY, storage=f"sqlite:///{args.out / 'study.db'}", load_if_exists=True, direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=6),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2))
    if not study.trials:  # start from the baseline's recipe so the search can only improve on it
        study.enqueue_trial(BASELINE)
    done = len([t for t in study.trials if t.state.is_finished()])
    if done < args.trials:
        study.optimize(lambda t: objective(t, ds, device), n_trials=args.trials - done, timeout=args.timeout,
                       catch=(RuntimeError,))
    save_outputs(study, args.out)
    print(json.dumps({"best_val_f1": study.best_value, "params": study.best_params}, indent=2))


if __name__ == "__main__":
    main()
