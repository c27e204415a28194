"""The model zoo's registry and the LeNets."""

from __future__ import annotations

import pytest
import torch

import squeezer as sq
from squeezer.errors import UnknownNameError
from squeezer.models import arch_of, create, list_models


def test_list_models_filters() -> None:
    assert {"lenet300", "lenet5"} <= set(list_models())
    assert list_models("lenet*") == sorted(n for n in list_models() if n.startswith("lenet"))
    assert list_models("no-such-*") == []


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(UnknownNameError, match="unknown model 'lenet6'; did you mean lenet5"):
        create("lenet6")


def test_unknown_argument_is_named() -> None:
    with pytest.raises(TypeError, match="takes no argument.*width"):
        create("lenet5", width=3)


@pytest.mark.parametrize(("name", "params"), [("lenet300", 266_610), ("lenet5", 431_080)])
def test_published_parameter_counts(name: str, params: int) -> None:
    model = create(name)
    assert sum(p.numel() for p in model.parameters()) == params


def test_lenet5_layers_are_the_caffe_ones() -> None:
    m = create("lenet5")
    assert (m.conv1.out_channels, m.conv1.kernel_size) == (20, (5, 5))
    assert (m.conv2.out_channels, m.conv2.kernel_size) == (50, (5, 5))
    assert (m.fc1.in_features, m.fc1.out_features, m.fc2.out_features) == (800, 500, 10)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize(("in_channels", "size", "classes"), [(1, 28, 10), (3, 32, 100)])
def test_every_model_runs_on_grey_and_colour(
    name: str, in_channels: int, size: int, classes: int
) -> None:
    if name == "alexnet_imagenet":  # its stem and poolings leave nothing of 32 px
        with pytest.raises(ValueError, match="at least 63 px.*use alexnet for small images"):
            create(name, num_classes=classes, in_channels=in_channels, input_size=size)
        return
    model = create(name, num_classes=classes, in_channels=in_channels, input_size=size)
    out = model(torch.randn(2, in_channels, size, size))
    assert out.shape == (2, classes)
    assert arch_of(model) == {
        "name": name,
        "kwargs": {"num_classes": classes, "in_channels": in_channels, "input_size": size},
    }
    assert tuple(model.input_shape) == (in_channels, size, size)


def test_register_model_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="already registered"):
        sq.models.register_model(lambda: torch.nn.Identity(), name="lenet5")


@pytest.mark.parametrize(
    ("name", "params"),
    [
        # torchvision's figures for the same architectures on 1000 classes
        ("resnet18", 11_689_512),
        ("resnet50", 25_557_032),
        ("mobilenet_v2", 3_504_872),
        ("vgg11_bn_imagenet", 132_868_840),
        ("vgg16_bn_imagenet", 138_365_992),
        # CIFAR-family figures of the papers: ResNet-20 0.27M, ResNet-56 0.85M
        ("resnet20", 272_474),
        ("resnet56", 855_770),
        # torchvision's AlexNet and SqueezeNet 1.1; Keras's MobileNet v1 (trainable)
        ("alexnet_imagenet", 61_100_840),
        ("squeezenet", 1_235_496),
        ("mobilenet_v1", 4_231_976),
    ],
)
def test_zoo_parameter_counts(name: str, params: int) -> None:
    classes = 1000 if params > 1_000_000 else 10
    model = create(name, num_classes=classes)
    assert sum(p.numel() for p in model.parameters()) == params


@pytest.mark.parametrize("name", [n for n in list_models() if not n.endswith("_imagenet")])
def test_every_model_saves_and_loads_bit_exactly(name: str, tmp_path) -> None:
    model = create(name, num_classes=10, in_channels=1, input_size=28)
    loaded = sq.load(sq.save(model, tmp_path / "m.sqz"))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
