"""A small DenseNet-BC (Huang et al. 2017): bottleneck layers and compressing transitions.

Depth 40 with growth rate 12 by default (3 dense blocks of 6 bottleneck layers). Every layer
concatenates its output to its input, so channel indices are shifted by concatenation offsets
all the way down a block: the hardest case for structured pruning's dependency graph.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from squeezer.errors import ConfigError
from squeezer.models.registry import register_model


class DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k), concatenated to the input."""

    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(self.relu1(self.bn1(x)))
        out = self.conv2(self.relu2(self.bn2(out)))
        return torch.cat([x, out], dim=1)


class Transition(nn.Module):
    """BN-ReLU-Conv1x1 (compression) then 2x2 average pooling."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.pool = nn.AvgPool2d(2, ceil_mode=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.conv(self.relu(self.bn(x))))


class DenseNetBC(nn.Module):
    """DenseNet-BC for small images.

    Args:
        depth: 3 * 2 * layers_per_block + 4 (40 gives 6 layers per block).
        growth: channels each layer adds.
        compression: transitions keep this fraction of channels.
        num_classes: output units.
        in_channels: image channels.
        input_size: the image side the model is meant for (recorded, not required).
    """

    def __init__(
        self,
        depth: int = 40,
        growth: int = 12,
        compression: float = 0.5,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ConfigError("DenseNet-BC depth must be 6n + 4")
        self.input_shape = (in_channels, input_size, input_size)
        per_block = (depth - 4) // 6
        channels = 2 * growth
        self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        blocks: list[nn.Module] = []
        for b in range(3):
            for _ in range(per_block):
                blocks.append(DenseLayer(channels, growth))
                channels += growth
            if b < 2:
                out = int(channels * compression)
                blocks.append(Transition(channels, out))
                channels = out
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn(self.blocks(self.conv1(x))))
        return self.fc(self.flatten(self.pool(x)))


@register_model
def densenet40_bc(
    num_classes: int = 10, in_channels: int = 3, input_size: int = 32, growth: int = 12
) -> DenseNetBC:
    """DenseNet-BC, depth 40, growth 12 (Huang et al. 2017)."""
    return DenseNetBC(40, growth, 0.5, num_classes, in_channels, input_size)
