"""All-CNN-C (Springenberg et al. 2015) and Network in Network (Lin, Chen & Yan 2014).

Both replace fully connected layers by convolutions and global average pooling; NIN adds
1x1 "mlpconv" layers after each spatial convolution.
"""

from __future__ import annotations

from torch import Tensor, nn

from squeezer.models.registry import register_model


def _conv(
    cin: int, cout: int, kernel: int, stride: int = 1, padding: int | None = None
) -> list[nn.Module]:
    pad = kernel // 2 if padding is None else padding
    return [nn.Conv2d(cin, cout, kernel, stride, pad), nn.ReLU(inplace=True)]


class AllCNNC(nn.Module):
    """All-CNN-C: strided convolutions instead of pooling, 1x1 classifier, global pooling."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> None:
        super().__init__()
        self.input_shape = (in_channels, input_size, input_size)
        self.features = nn.Sequential(
            nn.Dropout(0.2),
            *_conv(in_channels, 96, 3),
            *_conv(96, 96, 3),
            *_conv(96, 96, 3, 2),
            nn.Dropout(0.5),
            *_conv(96, 192, 3),
            *_conv(192, 192, 3),
            *_conv(192, 192, 3, 2),
            nn.Dropout(0.5),
            *_conv(192, 192, 3, padding=0),
            *_conv(192, 192, 1),
            nn.Conv2d(192, num_classes, 1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()

    def forward(self, x: Tensor) -> Tensor:
        return self.flatten(self.pool(self.features(x)))


class NIN(nn.Module):
    """Network in Network for CIFAR: three mlpconv blocks and global average pooling."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> None:
        super().__init__()
        self.input_shape = (in_channels, input_size, input_size)
        self.features = nn.Sequential(
            *_conv(in_channels, 192, 5),
            *_conv(192, 160, 1),
            *_conv(160, 96, 1),
            nn.MaxPool2d(3, 2, 1),
            nn.Dropout(0.5),
            *_conv(96, 192, 5),
            *_conv(192, 192, 1),
            *_conv(192, 192, 1),
            nn.AvgPool2d(3, 2, 1),
            nn.Dropout(0.5),
            *_conv(192, 192, 3),
            *_conv(192, 192, 1),
            nn.Conv2d(192, num_classes, 1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()

    def forward(self, x: Tensor) -> Tensor:
        return self.flatten(self.pool(self.features(x)))


@register_model
def allcnn_c(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> AllCNNC:
    """All-CNN-C (Springenberg et al. 2015)."""
    return AllCNNC(num_classes, in_channels, input_size)


@register_model
def nin(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> NIN:
    """Network in Network (Lin et al. 2014)."""
    return NIN(num_classes, in_channels, input_size)
