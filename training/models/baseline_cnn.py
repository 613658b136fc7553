"""Baseline: a small plain CNN with one fixed recipe, sized to train in ~5 minutes on 2 CPU cores."""
from torch import nn

from training.loop import Recipe
from training.nets import cnn


def build() -> nn.Module:
    return cnn(widths=(32, 64, 128), depth=2, dropout=0.1)


def recipe() -> Recipe:
    return Recipe(epochs=4, batch_size=256, lr=0.1)
