"""A GoogLeNet-style Inception network for small images (Szegedy et al. 2015).

Nine Inception modules with the original branch widths (1x1; 1x1-3x3; 1x1-5x5 as two 3x3;
pool-1x1), concatenated on channels, after a 3x3 stem: the usual CIFAR adaptation of
GoogLeNet. Concatenation gives each branch an offset in the next layer's input channels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from squeezer.models.registry import register_model


def _cbr(cin: int, cout: int, kernel: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class Inception(nn.Module):
    """Four parallel branches whose outputs are concatenated."""

    def __init__(self, cin: int, n1: int, r3: int, n3: int, r5: int, n5: int, pool: int) -> None:
        super().__init__()
        self.b1 = nn.Sequential(*_cbr(cin, n1, 1))
        self.b2 = nn.Sequential(*_cbr(cin, r3, 1), *_cbr(r3, n3, 3))
        self.b3 = nn.Sequential(*_cbr(cin, r5, 1), *_cbr(r5, n5, 3), *_cbr(n5, n5, 3))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), *_cbr(cin, pool, 1))
        self.out_channels = n1 + n3 + n5 + pool

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1)


MODULES = [
    (192, 64, 96, 128, 16, 32, 32),
    (256, 128, 128, 192, 32, 96, 64),
    "M",
    (480, 192, 96, 208, 16, 48, 64),
    (512, 160, 112, 224, 24, 64, 64),
    (512, 128, 128, 256, 24, 64, 64),
    (512, 112, 144, 288, 32, 64, 64),
    (528, 256, 160, 320, 32, 128, 128),
    "M",
    (832, 256, 160, 320, 32, 128, 128),
    (832, 384, 192, 384, 48, 128, 128),
]


class GoogLeNet(nn.Module):
    """GoogLeNet for small images.

    Args:
        num_classes: output units.
        in_channels: image channels.
        input_size: the image side the model is meant for (recorded, not required).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> None:
        super().__init__()
        self.input_shape = (in_channels, input_size, input_size)
        self.stem = nn.Sequential(*_cbr(in_channels, 192, 3))
        layers: list[nn.Module] = []
        for spec in MODULES:
            if spec == "M":
                layers.append(nn.MaxPool2d(3, 2, 1))
            else:
                layers.append(Inception(*spec))
        self.inception = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.flatten(self.pool(self.inception(self.stem(x)))))


@register_model
def googlenet(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> GoogLeNet:
    """GoogLeNet-style Inception network (Szegedy et al. 2015), small-image stem."""
    return GoogLeNet(num_classes, in_channels, input_size)
