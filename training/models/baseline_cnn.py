"""Baseline: a small plain CNN with one fixed recipe, sized so `make train MODEL=baseline_cnn`
finishes in under 375 s on 2 CPU cores (~33 s an epoch).

Its shape and recipe are written as one dict of the knobs that tuned_cnn searches,
so the two models are the same family and differ only in what the search chose.
"""
from torch import nn

from training.loop import Recipe
from training.nets import cnn

PARAMS = {"base_width": 32, "depth": 2, "dropout": 0.1, "batch_size": 256, "lr": 0.1,
          "weight_decay": 5e-4, "label_smoothing": 0.05, "flip": True}
EPOCHS = 10


def build_from(p: dict) -> nn.Module:
    w = p["base_width"]
    return cnn(widths=(w, 2 * w, 4 * w), depth=p["depth"], dropout=p["dropout"])


def recipe_from(p: dict, epochs: int = EPOCHS) -> Recipe:
    return Recipe(epochs=epochs, batch_size=p["batch_size"], lr=p["lr"], weight_decay=p["weight_decay"],
                  label_smoothing=p["label_smoothing"], flip=p["flip"])


def build() -> nn.Module:
    return build_from(PARAMS)


def recipe() -> Recipe:
    return recipe_from(PARAMS)
