"""The LeNets of the compression papers (Han et al. 2015, 2016; Ullrich et al. 2017).

``lenet300`` is LeNet-300-100, a multilayer perceptron with hidden layers of 300 and 100 units
(266,610 parameters on MNIST). ``lenet5`` is the Caffe variant of LeNet-5 those papers prune:
conv 20 5x5, max-pool, conv 50 5x5, max-pool, fc 500, ReLU, fc 10 (431,080 parameters). Unlike
LeCun's original there is no non-linearity after the convolutions, as in Caffe's example.
"""

from __future__ import annotations

from torch import Tensor, nn

from squeezer.errors import ConfigError
from squeezer.models.registry import register_model


class LeNet300(nn.Module):
    """LeNet-300-100: input -> 300 -> 100 -> classes, ReLU between.

    Args:
        num_classes: output units.
        in_channels: image channels.
        input_size: image height and width.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int = 28,
        hidden: tuple[int, int] = (300, 100),
    ) -> None:
        super().__init__()
        self.input_shape = (in_channels, input_size, input_size)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(in_channels * input_size * input_size, hidden[0])
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.relu2 = nn.ReLU()
        self.fc3 = nn.Linear(hidden[1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu1(self.fc1(self.flatten(x)))
        return self.fc3(self.relu2(self.fc2(x)))


class LeNet5(nn.Module):
    """Caffe's LeNet-5: conv(20, 5) pool conv(50, 5) pool fc(500) ReLU fc(classes).

    Args:
        num_classes: output units.
        in_channels: image channels.
        input_size: image height and width (28 for MNIST; any size >= 16 works).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> None:
        super().__init__()
        if input_size < 16:
            raise ConfigError(f"lenet5 needs input_size >= 16, got {input_size}")
        self.input_shape = (in_channels, input_size, input_size)
        side = ((input_size - 4) // 2 - 4) // 2
        self.conv1 = nn.Conv2d(in_channels, 20, kernel_size=5)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(50 * side * side, 500)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool2(self.conv2(self.pool1(self.conv1(x))))
        return self.fc2(self.relu(self.fc1(self.flatten(x))))


@register_model
def lenet300(num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> LeNet300:
    """LeNet-300-100 (Han et al. 2015)."""
    return LeNet300(num_classes, in_channels, input_size)


@register_model
def lenet5(num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> LeNet5:
    """Caffe LeNet-5 (Han et al. 2015)."""
    return LeNet5(num_classes, in_channels, input_size)
