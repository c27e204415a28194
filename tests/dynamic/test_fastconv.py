"""Winograd F(2x2, 3x3) and FFT convolution: the same outputs and gradients as nn.Conv2d over
geometries, the convert_ walker on a zoo model and a user's model (saved, loaded, reasons for
the layers left), FLOP counts, and bad input."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import squeezer as sq
from squeezer.analysis import count_flops
from squeezer.errors import ConfigError, ModelError
from squeezer.layers import FFTConv2d, WinogradConv2d

# (in, out, kernel, stride, padding, groups, height, width)
GEOMETRIES = [
    (3, 8, 3, 1, 1, 1, 9, 11),  # odd sizes: partial output tiles
    (4, 6, 3, 1, 0, 2, 8, 8),  # grouped, no padding
    (8, 8, 3, 1, 1, 8, 7, 5),  # depthwise
    (3, 5, 5, 1, 2, 1, 10, 9),
    (4, 4, 3, 2, 1, 1, 9, 9),  # strided
    (6, 4, 7, 3, 0, 2, 15, 12),
    (2, 3, 1, 1, 0, 1, 4, 4),  # 1x1
]


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_same_outputs_and_gradients_as_the_convolution(geometry):
    c, o, k, s, p, g, h, w = geometry
    torch.manual_seed(0)
    conv = nn.Conv2d(c, o, k, stride=s, padding=p, groups=g).double()
    x = torch.randn(2, c, h, w, dtype=torch.float64, requires_grad=True)
    layers = [FFTConv2d.from_conv(conv)]
    if k == 3 and s == 1:
        layers.append(WinogradConv2d.from_conv(conv))
    ref = conv(x)
    grads = torch.autograd.grad(ref.square().sum(), (x, conv.weight, conv.bias))
    for layer in layers:
        out = layer(x)
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
        got = torch.autograd.grad(out.square().sum(), (x, layer.weight, layer.bias))
        for a, b in zip(got, grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_float32_winograd_is_within_rounding_of_the_convolution():
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 64, 3, padding=1)
    x = torch.randn(2, 64, 28, 28)
    fast = WinogradConv2d.from_conv(conv)
    with torch.no_grad():
        ref = conv(x)
        assert float((fast(x) - ref).abs().max()) < 1e-4 * float(ref.abs().max())


def test_winograd_needs_fewer_multiplications_in_its_products():
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 32, 3, padding=1)
    x = torch.randn(1, 32, 16, 16)
    fast = WinogradConv2d.from_conv(conv)
    # the 16 tile-position products: 16 x (32 x 32) x 64 tiles, against 9 x 32 x 32 x 256
    products = 2 * 16 * 32 * 32 * 64
    assert count_flops(conv, x)[0] == 2 * 9 * 32 * 32 * 256 == 2.25 * products
    total = count_flops(fast, x)[0]
    assert products < total < count_flops(conv, x)[0]  # plus the tile transforms


def test_convert_a_zoo_model_saves_loads_and_says_why_layers_stay(tmp_path):
    torch.manual_seed(0)
    model = sq.models.create("resnet20", num_classes=10, in_channels=1, input_size=28).eval()
    x = torch.randn(2, 1, 28, 28)
    ref = model(x).detach()
    report = sq.convert_(model, sq.dynamic.Winograd(), x)
    reasons = {r.name: r.reason for r in report.layers if not r.converted}
    assert reasons["layers.1.0.conv1"] == "stride (2, 2): F(2x2, 3x3) needs stride 1"
    assert reasons["layers.1.0.downsample.0"] == "kernel (1, 1): F(2x2, 3x3) needs 3x3"
    assert len(report.converted) == 17 and isinstance(model.conv1, WinogradConv2d)
    assert report.max_abs_diff is not None and report.max_abs_diff < 1e-4
    assert all(r.flops_after < r.flops_before for r in report.converted[1:])
    assert "17 of 21 layers converted" in report.format()
    sq.save(model, tmp_path / "w.sqz")
    loaded = sq.load(tmp_path / "w.sqz").eval()
    assert isinstance(loaded.layers[0][0].conv1, WinogradConv2d)
    torch.testing.assert_close(loaded(x), model(x))
    torch.testing.assert_close(model(x), ref, atol=1e-4, rtol=1e-4)
    sq.save_checkpoint(model, tmp_path / "w.pt")
    assert isinstance(sq.load_checkpoint(tmp_path / "w.pt").conv1, WinogradConv2d)


class UserNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 5, padding=2)
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.ReLU())
        self.dilated = nn.Conv2d(4, 4, 3, padding=2, dilation=2)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dilated(self.body(self.stem(x)))
        return self.head(y.mean((2, 3)))


def test_a_users_model_converts_and_a_named_layer_that_cannot_is_an_error():
    torch.manual_seed(0)
    model = UserNet().eval()
    x = torch.randn(3, 1, 12, 12)
    ref = model(x).detach()
    fft = copy.deepcopy(model)
    report = sq.convert_(fft, sq.dynamic.FFTConv(), x)
    assert [r.name for r in report.converted] == ["stem", "body.0"]
    assert {r.name: r.reason for r in report.layers}["dilated"].startswith("dilation (2, 2)")
    torch.testing.assert_close(fft(x), ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ModelError, match=r"stem cannot be converted: kernel \(5, 5\)"):
        sq.convert_(copy.deepcopy(model), sq.dynamic.Winograd(layers=("stem", "body.0")), x)
    with pytest.raises(ModelError, match="no layer could be converted"):
        sq.convert_(copy.deepcopy(model), sq.dynamic.Winograd(layers=("dilated*",)), x)


def test_a_pruned_conv_converts_with_its_mask_baked_in():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1))
    sq.prune_(model, sq.pruning.Magnitude(sparsity=0.5))
    x = torch.randn(1, 3, 8, 8)
    ref = model(x).detach()
    sq.convert_(model, sq.dynamic.Winograd(), x)
    assert isinstance(model[0], WinogradConv2d)
    assert float((model[0].weight == 0).float().mean()) == pytest.approx(0.5)
    torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=1e-5)


def test_bad_input():
    with pytest.raises(ValueError, match="needs a 3x3 kernel at stride 1"):
        WinogradConv2d(4, 4, kernel_size=5)
    with pytest.raises(ValueError, match="groups=3 must divide in_channels=4"):
        FFTConv2d(4, 6, 3, groups=3)
    with pytest.raises(ConfigError, match="min_kernel"):
        sq.dynamic.FFTConv(min_kernel=0)
    with pytest.raises(ConfigError, match="not a convert method"):
        sq.convert_(nn.Linear(2, 2), sq.pruning.Magnitude(sparsity=0.5))
