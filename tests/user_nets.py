"""A network written here, not in squeezer's zoo: the user's own model in the tests and the
command line (``user_nets:make_net``)."""

from __future__ import annotations

import torch
from torch import nn


class UserNet(nn.Module):
    """A small residual CNN with a classifier, defined outside squeezer."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.body = nn.Sequential(
            nn.Conv2d(16, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
        )
        self.head = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc1 = nn.Linear(32 * 16, 64)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.body(x))
        x = self.pool(self.head(x)).flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))


def make_net() -> UserNet:
    torch.manual_seed(0)
    return UserNet()
