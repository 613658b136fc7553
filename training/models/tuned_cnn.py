"""The baseline's CNN family, with its shape and recipe searched by Optuna.

`make tune` runs the study (tune.py); this module builds the model from the
best trial it saved and trains it for the baseline's number of epochs on the
whole train split. Selection uses the validation split only.
"""
import json
from pathlib import Path

from torch import nn

from training.loop import Recipe
from training.models.baseline_cnn import PARAMS as BASELINE
from training.models.baseline_cnn import build_from, recipe_from

BEST = Path(__file__).resolve().parent.parent / "results" / "tuned_cnn" / "best_params.json"


def params(path: Path = BEST) -> dict:
    """The study's best parameters; the baseline's until a study has run."""
    return json.loads(path.read_text())["params"] if path.is_file() else BASELINE


def build() -> nn.Module:
    return build_from(params())


def recipe() -> Recipe:
    return recipe_from(params())
