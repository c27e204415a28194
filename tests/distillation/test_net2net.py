"""Net2Net: the grown networks compute what the originals did, save and load, and train on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import squeezer as sq
from squeezer.distillation import deepen_, widen_
from squeezer.errors import ConfigError


def _same(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    a.eval(), b.eval()
    with torch.no_grad():
        return float((a(x) - b(x)).abs().max())


def _bn_stats(model: nn.Module) -> None:
    torch.manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
            m.bias.data.normal_()


@pytest.mark.parametrize(
    ("name", "layer", "nxt", "bn", "width", "shape"),
    [
        ("lenet300", "fc1", "fc2", None, 450, (4, 1, 28, 28)),
        ("lenet5", "conv1", "conv2", None, 32, (4, 1, 28, 28)),
        ("lenet5", "conv2", "fc1", None, 64, (4, 1, 28, 28)),  # flatten in between
        ("lenet5", "fc1", "fc2", None, 700, (4, 1, 28, 28)),
        ("vgg11_bn", "features.0", "features.4", "features.1", 96, (2, 1, 28, 28)),
    ],
)
def test_widen_preserves_the_function_exactly(name, layer, nxt, bn, width, shape, tmp_path):
    torch.manual_seed(0)
    kwargs = {"num_classes": 10, "in_channels": 1, "input_size": 28} if "vgg" in name else {}
    model = sq.models.create(name, **kwargs)
    _bn_stats(model)
    original = sq.core.baked_copy(model)
    mapping = widen_(model, layer, nxt, width, batchnorm=bn)
    assert mapping.shape == (width,)
    grown = model.get_submodule(layer)
    assert (grown.out_channels if isinstance(grown, nn.Conv2d) else grown.out_features) == width
    x = torch.randn(*shape)
    assert _same(original, model, x) < 1e-5
    sq.save(model, tmp_path / "w.sqz")
    back = sq.load(tmp_path / "w.sqz")
    assert _same(back, model, x) == 0.0


def test_widen_with_noise_changes_little_and_breaks_symmetry() -> None:
    torch.manual_seed(0)
    model = sq.models.create("lenet300")
    original = sq.core.baked_copy(model)
    mapping = widen_(model, "fc1", "fc2", 400, noise=0.01)
    x = torch.randn(8, 1, 28, 28)
    diff = _same(original, model, x)
    assert 0 < diff < 0.05
    copy_col, src = 300, int(mapping[300])
    assert not torch.equal(model.fc2.weight[:, copy_col], model.fc2.weight[:, src])


@pytest.mark.parametrize(
    ("name", "after", "batchnorm"),
    [("lenet300", "relu1", False), ("lenet300", "relu2", True), ("lenet5", "relu", True)],
)
def test_deepen_after_a_relu_preserves_the_function(name, after, batchnorm, tmp_path) -> None:
    torch.manual_seed(0)
    model = sq.models.create(name)
    original = sq.core.baked_copy(model)
    new = deepen_(model, after, batchnorm=batchnorm)
    assert isinstance(new, nn.Linear)
    x = torch.randn(4, 1, 28, 28)
    assert _same(original, model, x) < 1e-5
    sq.save(model, tmp_path / "d.sqz")
    assert _same(sq.load(tmp_path / "d.sqz"), model, x) == 0.0


def test_deepen_a_convolution_stack() -> None:
    torch.manual_seed(0)
    model = sq.models.create("vgg11_bn", num_classes=10, in_channels=1, input_size=28)
    _bn_stats(model)
    original = sq.core.baked_copy(model)
    new = deepen_(model, "features.2", batchnorm=True)  # the ReLU after conv 0 and BN 1
    assert isinstance(new, nn.Conv2d) and new.in_channels == new.out_channels == 64
    assert _same(original, model, torch.randn(2, 1, 28, 28)) < 1e-4


def test_a_grown_model_keeps_training() -> None:
    train, test = sq.data.load("digits")
    torch.manual_seed(0)
    small = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))
    sq.fit(small, train, epochs=3, lr=0.05, batch_size=64)
    before = sq.evaluate(small, test)["top1"]
    widen_(small, "1", "3", 64, noise=0.01)
    deepen_(small, "2")
    right_after = sq.evaluate(small, test)["top1"]
    sq.fit(small, train, epochs=3, lr=0.05, batch_size=64)
    assert abs(right_after - before) < 0.02
    assert sq.evaluate(small, test)["top1"] >= before - 0.01


def test_bad_input() -> None:
    model = sq.models.create("lenet5")
    with pytest.raises(ConfigError, match="not wider"):
        widen_(model, "fc1", "fc2", 100)
    with pytest.raises(ConfigError, match="Linear or Conv2d only"):
        widen_(model, "pool1", "conv2", 30)
    with pytest.raises(ConfigError, match="no module 'fc9'"):
        widen_(model, "fc9", "fc2", 600)
    with pytest.raises(ConfigError, match="not a multiple"):
        widen_(sq.models.create("lenet300"), "fc1", "fc3", 400)
    with pytest.raises(ConfigError, match="not a BatchNorm"):
        widen_(model, "conv1", "conv2", 40, batchnorm="pool1")
    with pytest.raises(ConfigError, match="Linear, Conv2d or the ReLU"):
        deepen_(model, "pool1")
