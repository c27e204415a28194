"""A small trained CNN with BatchNorm on synthetic 8x8 images, shared by the search tests and
by the worker processes they start (imported by file path)."""

from __future__ import annotations

import torch
from torch import nn

import squeezer as sq


def batches(n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    w = torch.randn(64, 4, generator=torch.Generator().manual_seed(7))
    y = (x.flatten(1) @ w).argmax(1)
    return [(x[i : i + 64], y[i : i + 64]) for i in range(0, n, 64)]


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(128, 4),
    )  # fmt: skip


def trained() -> tuple[nn.Module, list, list]:
    torch.set_num_threads(1)
    model = cnn()
    train = batches(1024, 0)
    sq.fit(model, train, epochs=8, lr=0.05)
    return model.eval(), train, batches(256, 1)


def space_and_evaluator(model: nn.Module, train: list, val: list):
    from squeezer.automation import ChannelSpace, Evaluator

    space = ChannelSpace(model, torch.zeros(1, 1, 8, 8), max_ratio=0.75)
    return space, Evaluator(val, train=train, bn_batches=4)
