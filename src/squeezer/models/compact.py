"""Efficient architectures (family C) and AlexNet, built from :mod:`squeezer.layers.compact`.

Each takes ``num_classes``, ``in_channels`` and ``input_size``. At ImageNet sizes (input of
128 or more) they are the papers' networks, with torchvision's parameter counts where
torchvision has them (AlexNet 61,100,840; SqueezeNet 1.1 1,235,496; MobileNet v1 4,231,976 at
width 1.0, the count Keras reports). For small images (MNIST, CIFAR) the stem keeps the
resolution (stride 1, no stem pooling), as CIFAR versions of these networks do; AlexNet has
a separate small-image model (``alexnet``; ``alexnet_imagenet`` is torchvision's).
"""

from __future__ import annotations

from torch import Tensor, nn

from squeezer.layers.compact import EffNetBlock, Fire, SeparableConv2d, ShiftBlock, ShuffleUnit
from squeezer.models.registry import register_model


def _small(input_size: int) -> bool:
    return input_size < 128


class _Classifier(nn.Module):
    input_shape: tuple[int, int, int]

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


MIN_IMAGENET_SIZE = 63  # the 11x11/4 stem and three 3x3/2 poolings leave 1x1


class AlexNet(_Classifier):
    """AlexNet (Krizhevsky 2012). ``imagenet=True``: torchvision's network (11x11 stride-4
    stem, 6x6 pooled features, two 4096-unit fc layers). Otherwise the small-image version
    (CIFAR-style): a 3x3 stride-1 stem with 2x2 pooling, the same five convolutions, 2x2
    pooled features and two 1024-unit fc layers."""

    def __init__(
        self, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224,
        imagenet: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        self.input_shape = (in_channels, input_size, input_size)
        if imagenet and input_size < MIN_IMAGENET_SIZE:
            raise ValueError(
                f"alexnet_imagenet needs images of at least {MIN_IMAGENET_SIZE} px (its "
                f"pooling leaves nothing of {input_size} px); use alexnet for small images"
            )
        if imagenet:
            stem: list[nn.Module] = [nn.Conv2d(in_channels, 64, 11, 4, 2), nn.ReLU(inplace=True),
                                     nn.MaxPool2d(3, 2)]  # fmt: skip
            pool: nn.Module = nn.MaxPool2d(3, 2)
            side, hidden = 6, 4096
        else:
            stem = [nn.Conv2d(in_channels, 64, 3, 1, 1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            pool = nn.MaxPool2d(2)
            side, hidden = 2, 1024
        self.features = nn.Sequential(
            *stem,
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), pool,
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2) if imagenet else nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(side),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.5), nn.Linear(256 * side * side, hidden), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )  # fmt: skip


@register_model
def alexnet(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> AlexNet:
    """AlexNet for small images (see :class:`AlexNet`)."""
    return AlexNet(num_classes, in_channels, input_size, imagenet=False)


@register_model
def alexnet_imagenet(
    num_classes: int = 1000, in_channels: int = 3, input_size: int = 224
) -> AlexNet:
    """AlexNet (Krizhevsky, Sutskever & Hinton 2012) as torchvision builds it."""
    return AlexNet(num_classes, in_channels, input_size, imagenet=True)


class SqueezeNet(_Classifier):
    """SqueezeNet 1.1: Fire modules, no fully connected layer (a 1x1 conv to the classes and
    global average pooling, as in NIN)."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224):
        super().__init__()
        self.input_shape = (in_channels, input_size, input_size)
        small = _small(input_size)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, stride=1 if small else 2, padding=1 if small else 0),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, ceil_mode=True) if not small else nn.Identity(),
            Fire(64, 16, 64, 64), Fire(128, 16, 64, 64),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(128, 32, 128, 128), Fire(256, 32, 128, 128),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(256, 48, 192, 192), Fire(384, 48, 192, 192),
            Fire(384, 64, 256, 256), Fire(512, 64, 256, 256),
        )  # fmt: skip
        final = nn.Conv2d(512, num_classes, 1)
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), final, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        # The paper's initialization (as torchvision's): He-uniform convolutions, zero biases,
        # the classifier conv N(0, 0.01). Without BatchNorm, PyTorch's default (a = sqrt(5))
        # shrinks the signal through the eighteen convolutions and training stalls at chance.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is final:
                    nn.init.normal_(m.weight, 0.0, 0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


@register_model
def squeezenet(num_classes: int = 1000, in_channels: int = 3, input_size: int = 224) -> SqueezeNet:
    """SqueezeNet 1.1 (Iandola et al. 2016)."""
    return SqueezeNet(num_classes, in_channels, input_size)


# (output channels, stride) of MobileNet v1's 13 separable layers
MOBILENET_V1 = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5,
                (1024, 2), (1024, 1)]  # fmt: skip


class MobileNetV1(_Classifier):
    """MobileNet v1: a 3x3 conv then 13 depthwise-separable layers, global pooling, one fc;
    ``width_mult`` scales every layer's channels (the paper's alpha); the resolution
    multiplier is the input size. On small images the stem and the first strided separable
    layer keep stride 1."""

    def __init__(
        self, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224,
        width_mult: float = 1.0,
    ) -> None:  # fmt: skip
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        self.input_shape = (in_channels, input_size, input_size)
        small = _small(input_size)

        def w(c: int) -> int:
            return max(8, int(c * width_mult))

        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, w(32), 3, 1 if small else 2, 1, bias=False),
            nn.BatchNorm2d(w(32)), nn.ReLU(inplace=True),
        ]  # fmt: skip
        cin = w(32)
        for i, (c, s) in enumerate(MOBILENET_V1):
            stride = 1 if small and i == 1 else s
            layers.append(SeparableConv2d(cin, w(c), 3, stride))
            cin = w(c)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)
        )


@register_model
def mobilenet_v1(
    num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, width_mult: float = 1.0
) -> MobileNetV1:
    """MobileNet v1 (Howard et al. 2017) with a width multiplier."""
    return MobileNetV1(num_classes, in_channels, input_size, width_mult)


# ShuffleNet v1 stage output channels per group count (Zhang et al. 2017, table 1)
SHUFFLE_CHANNELS = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}


class ShuffleNet(_Classifier):
    """ShuffleNet v1: three stages (4, 8 and 4 units) of :class:`ShuffleUnit` with grouped
    1x1 convolutions and channel shuffles; ``width_mult`` scales the channels (the paper's
    "ShuffleNet s x")."""

    def __init__(
        self, num_classes: int = 1000, in_channels: int = 3, input_size: int = 224,
        groups: int = 3, width_mult: float = 1.0,
    ) -> None:  # fmt: skip
        super().__init__()
        if groups not in SHUFFLE_CHANNELS:
            raise ValueError(f"groups must be one of {sorted(SHUFFLE_CHANNELS)}, got {groups}")
        self.input_shape = (in_channels, input_size, input_size)
        small = _small(input_size)
        base = int(SHUFFLE_CHANNELS[groups] * width_mult) // (groups * 4) * (groups * 4)
        stem = 24
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, stem, 3, 1 if small else 2, 1, bias=False),
            nn.BatchNorm2d(stem), nn.ReLU(inplace=True),
        ]  # fmt: skip
        if not small:
            layers.append(nn.MaxPool2d(3, 2, 1))
        cin = stem
        for stage, repeats in enumerate((4, 8, 4)):
            cout = base * 2**stage
            for i in range(repeats):
                if i == 0:
                    first = 1 if stage == 0 else groups  # 24 stem channels: no groups first
                    layers.append(ShuffleUnit(cin, cout, groups, 2, first_groups=first))
                else:
                    layers.append(ShuffleUnit(cout, cout, groups, 1))
                cin = cout
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)
        )


@register_model
def shufflenet(
    num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, groups: int = 3,
    width_mult: float = 1.0,
) -> ShuffleNet:  # fmt: skip
    """ShuffleNet v1 (Zhang et al. 2017)."""
    return ShuffleNet(num_classes, in_channels, input_size, groups, width_mult)


class ShiftResNet(_Classifier):
    """ShiftResNet for small images (Wu et al. 2018): ResNet-20's layout (16, 32, 64 channels,
    three blocks per stage) with every 3x3 pair replaced by a 1x1 - shift - 1x1 block of
    ``expansion`` times the channels in the middle."""

    def __init__(
        self, num_classes: int = 10, in_channels: int = 3, input_size: int = 32,
        expansion: float = 3.0, blocks: int = 3,
    ) -> None:  # fmt: skip
        super().__init__()
        self.input_shape = (in_channels, input_size, input_size)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
        ]  # fmt: skip
        cin = 16
        for stage, c in enumerate((16, 32, 64)):
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(ShiftBlock(cin, c, stride, expansion))
                cin = c
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)
        )


@register_model
def shiftnet(
    num_classes: int = 10, in_channels: int = 3, input_size: int = 32, expansion: float = 3.0
) -> ShiftResNet:
    """ShiftResNet-20 (Wu et al. 2018) for small images."""
    return ShiftResNet(num_classes, in_channels, input_size, expansion)


class EffNet(_Classifier):
    """EffNet for small images (Freeman et al. 2018): EffNet blocks of 32, 64 and 128
    channels, each halving the resolution, then global pooling and one fc."""

    def __init__(
        self, num_classes: int = 10, in_channels: int = 3, input_size: int = 32,
        channels: tuple[int, ...] = (32, 64, 128),
    ) -> None:  # fmt: skip
        super().__init__()
        self.input_shape = (in_channels, input_size, input_size)
        layers: list[nn.Module] = []
        cin = in_channels
        for c in channels:
            layers.append(EffNetBlock(cin, c, bottleneck=max(4, c // 2)))
            cin = c
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)
        )


@register_model
def effnet(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> EffNet:
    """EffNet (Freeman, Roese-Koerner & Kummert 2018) for small images."""
    return EffNet(num_classes, in_channels, input_size)
