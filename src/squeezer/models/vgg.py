"""VGG with BatchNorm (Simonyan & Zisserman 2015; BN as in Ioffe & Szegedy 2015).

Two variants per depth: the CIFAR one used by the filter-pruning papers (Li et al. 2017; Liu et
al. 2017) with a single linear classifier after global pooling, and the ImageNet one with the
4096-4096 classifier (``*_imagenet``, 138,365,992 parameters for VGG-16 on 1000 classes).
Pools use ``ceil_mode`` so that 28x28 inputs survive five of them.
"""

from __future__ import annotations

from torch import Tensor, nn

from squeezer.models.registry import register_model

CONFIGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """VGG-BN.

    Args:
        depth: 11 or 16.
        num_classes: output units.
        in_channels: image channels.
        imagenet: the 7x7-pooled 4096-4096 classifier instead of the CIFAR one.
        input_size: the image side the model is meant for (recorded, not required).
    """

    def __init__(
        self,
        depth: int = 16,
        num_classes: int = 10,
        in_channels: int = 3,
        imagenet: bool = False,
        input_size: int | None = None,
    ) -> None:
        super().__init__()
        size = input_size or (224 if imagenet else 32)
        self.input_shape = (in_channels, size, size)
        layers: list[nn.Module] = []
        channels = in_channels
        for v in CONFIGS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                layers += [
                    nn.Conv2d(channels, int(v), 3, padding=1),
                    nn.BatchNorm2d(int(v)),
                    nn.ReLU(inplace=True),
                ]
                channels = int(v)
        self.features = nn.Sequential(*layers)
        if imagenet:
            self.pool = nn.AdaptiveAvgPool2d(7)
            self.classifier = nn.Sequential(
                nn.Flatten(),
                nn.Linear(channels * 49, 4096),
                nn.ReLU(inplace=True),
                nn.Dropout(),
                nn.Linear(4096, 4096),
                nn.ReLU(inplace=True),
                nn.Dropout(),
                nn.Linear(4096, num_classes),
            )
        else:
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(channels, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)))


@register_model
def vgg11_bn(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> VGG:
    """VGG-11 with BatchNorm, CIFAR classifier."""
    return VGG(11, num_classes, in_channels, input_size=input_size)


@register_model
def vgg16_bn(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> VGG:
    """VGG-16 with BatchNorm, CIFAR classifier (Li et al. 2017; Liu et al. 2017)."""
    return VGG(16, num_classes, in_channels, input_size=input_size)


@register_model
def vgg11_bn_imagenet(num_classes: int = 1000, in_channels: int = 3, input_size: int = 224) -> VGG:
    """VGG-11 with BatchNorm and the ImageNet classifier."""
    return VGG(11, num_classes, in_channels, imagenet=True, input_size=input_size)


@register_model
def vgg16_bn_imagenet(num_classes: int = 1000, in_channels: int = 3, input_size: int = 224) -> VGG:
    """VGG-16 with BatchNorm and the ImageNet classifier."""
    return VGG(16, num_classes, in_channels, imagenet=True, input_size=input_size)
