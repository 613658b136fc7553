"""The baseline's CNN family, with its shape and recipe searched by Optuna.

`make tune` runs the study (tune.py); this module builds the model from the
best trial it saved. Selection uses the validation split only.
"""
import json
from pathlib import Path

from torch import nn

from training.loop import Recipe
from training.nets import cnn

BEST = Path(__file__).resolve().parent.parent / "results" / "tuned_cnn" / "best_params.json"
# Until a study has run, fall back to the baseline's shape and recipe.
DEFAULT = {"base_width": 32, "depth": 2, "dropout": 0.1, "epochs": 4, "batch_size": 256, "lr": 0.1,
           "weight_decay": 5e-4, "label_smoothing": 0.05, "flip": True}


def params(path: Path = BEST) -> dict:
    return json.loads(path.read_text())["params"] if path.is_file() else DEFAULT


def build_from(p: dict) -> nn.Module:
    w = p["base_width"]
    return cnn(widths=(w, 2 * w, 4 * w), depth=p["depth"], dropout=p["dropout"])


def recipe_from(p: dict) -> Recipe:
    return Recipe(epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"], weight_decay=p["weight_decay"],
                  label_smoothing=p["label_smoothing"], flip=p["flip"])


def build() -> nn.Module:
    return build_from(params())


def recipe() -> Recipe:
    return recipe_from(params())
