"""torchvision ResNet-50, trained from scratch (no pretrained weights can be downloaded)."""
from torch import nn

from training.loop import Recipe
from training.nets import resnet50


def build() -> nn.Module:
    return resnet50()


def recipe() -> Recipe:
    return Recipe(epochs=6, batch_size=128, lr=0.1, weight_decay=1e-4)
