"""Residual networks (He, Zhang, Ren & Sun 2016).

``resnet20``/``resnet56`` are the CIFAR family (three stages of 16/32/64 channels, 6n+2
layers), with 1x1 projection shortcuts where the shape changes. ``resnet18``/``resnet50`` are
the ImageNet networks (11,689,512 and 25,557,032 parameters on 1000 classes).
"""

from __future__ import annotations

from torch import Tensor, nn

from squeezer.models.registry import register_model


def _projection(cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity or projection shortcut."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection(cin, width, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4, with a shortcut."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection(cin, cout, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(nn.Module):
    """A residual network of ``blocks`` per stage.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        blocks: blocks per stage.
        widths: base width per stage.
        num_classes: output units.
        in_channels: image channels.
        imagenet: 7x7 stride-2 stem and max-pool (else a 3x3 stride-1 stem, as for CIFAR).
        input_size: the image side the model is meant for (recorded, not required).
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        blocks: list[int],
        widths: list[int],
        num_classes: int,
        in_channels: int,
        imagenet: bool,
        input_size: int,
    ) -> None:
        super().__init__()
        self.input_shape = (in_channels, input_size, input_size)
        stem = widths[0]
        if imagenet:
            self.conv1 = nn.Conv2d(in_channels, stem, 7, 2, 3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        cin = stem
        stages = []
        for i, (n, width) in enumerate(zip(blocks, widths, strict=True)):
            layers = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                layers.append(block(cin, width, stride))
                cin = width * block.expansion
            stages.append(nn.Sequential(*layers))
        self.layers = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.fc(self.flatten(self.avgpool(self.layers(x))))


@register_model
def resnet20(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> ResNet:
    """ResNet-20 for CIFAR (3 stages of 3 basic blocks)."""
    return ResNet(BasicBlock, [3, 3, 3], [16, 32, 64], num_classes, in_channels, False, input_size)


@register_model
def resnet56(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> ResNet:
    """ResNet-56 for CIFAR (3 stages of 9 basic blocks)."""
    return ResNet(BasicBlock, [9, 9, 9], [16, 32, 64], num_classes, in_channels, False, input_size)


@register_model
def resnet18(num_classes: int = 1000, in_channels: int = 3, input_size: int = 224) -> ResNet:
    """ResNet-18 for ImageNet."""
    return ResNet(
        BasicBlock, [2, 2, 2, 2], [64, 128, 256, 512], num_classes, in_channels, True, input_size
    )


@register_model
def resnet50(num_classes: int = 1000, in_channels: int = 3, input_size: int = 224) -> ResNet:
    """ResNet-50 for ImageNet (bottleneck blocks)."""
    return ResNet(
        Bottleneck, [3, 4, 6, 3], [64, 128, 256, 512], num_classes, in_channels, True, input_size
    )
