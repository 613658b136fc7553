"""torchvision ResNet-50, trained from scratch (no pretrained weights can be downloaded).

AdamW rather than SGD: on the 8x8-resolution body (measured with an earlier
space-to-depth stem), SGD with momentum diverged at learning rates above ~0.01
(loss > 1 within 50 steps), while AdamW at 1e-3 learned steadily from the first steps.
"""
from torch import nn

from training.loop import Recipe
from training.nets import resnet50

# Instances when served on CPU (configs/cpu.pbtxt, and the embedded stack's twin). One instance
# runs one batch at a time on one core: at 6.5 ms of CPU per image that caps a 2-core machine
# at about 155 images/s however the rest is tuned; a second instance lets two batches run at once.
CPU_INSTANCES = 2


def build() -> nn.Module:
    return resnet50()


def recipe() -> Recipe:
    # The winner of a six-way sweep on one GPU (README). Random translations are what stopped
    # it memorising the train split. On a GPU a step of this net costs about the same at
    # batch 128 or 512 (kernel launches, not arithmetic), so batch 512 means 4x fewer steps.
    # Seed 1 made the committed weights: the best of five seeds by validation F1 (0.9806-0.9818
    # as served, a spread that is seed noise, not recipe).
    return Recipe(epochs=40, batch_size=512, lr=3e-3, weight_decay=0.05, optimizer="adamw", shift=4, seed=1)
