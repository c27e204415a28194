"""Binary and ternary weights, binary activations: BinaryConnect, BinaryNet, XNOR-Net / BWN,
TWN and TTQ — their forward and gradient rules, training through sq.fit, packed .sqz storage
that loads back exactly, the ReLU replacement, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import squeezer as sq
from squeezer.errors import ConfigError
from squeezer.quantization import (
    LAB,
    TTQ,
    TWN,
    XNOR,
    BinaryConnect,
    BinaryNet,
    frozen_copy,
    quantized_layers,
)
from squeezer.quantization.binary import (
    BinaryConnectWeight,
    BinaryInput,
    LABWeight,
    TTQWeight,
    TWNWeight,
    XNORWeight,
    glorot_bound,
)
from squeezer.quantization.fake import FrozenValues, FrozenWeight


class Net(nn.Module):
    """A user's model with ReLU modules (which binary inputs replace) and a BN after each
    convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.act2 = nn.ReLU()
        self.fc = nn.Linear(16 * 4 * 4, 32)
        self.act3 = nn.ReLU()
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 4), 1)
        return self.head(self.act3(self.fc(x)))


def _net() -> Net:
    torch.manual_seed(0)
    return Net()


def _batches(n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [
        (torch.randn(16, 1, 12, 12, generator=gen), torch.randint(0, 10, (16,), generator=gen))
        for _ in range(n)
    ]


CONFIGS = [
    BinaryConnect(),
    BinaryConnect(stochastic=True),
    BinaryNet(),
    XNOR(),
    XNOR(quantize_inputs=False),
    LAB(),
    TWN(),
    TTQ(),
]


def _id(c: object) -> str:
    extra = "-stochastic" if getattr(c, "stochastic", False) else ""
    extra += "-bwn" if isinstance(c, XNOR) and not c.quantize_inputs else ""
    return type(c).__name__ + extra


# ----------------------------------------------------------------------------- quantizers
def test_binaryconnect_weights_are_plus_minus_the_glorot_bound_and_the_latent_is_clipped():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(16, 8, 3, 3))
    h = math.sqrt(1.5 / (8 * 9 + 16 * 9))
    assert glorot_bound(w) == pytest.approx(h)
    q = BinaryConnectWeight().train()
    out = q(w)
    assert set(out.unique().tolist()) == pytest.approx([-h, h])
    assert float(w.detach().abs().max()) == pytest.approx(h)  # clipped in place to [-H, H]
    out.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))  # straight through


def test_stochastic_binarization_is_unbiased_and_inference_is_deterministic():
    torch.manual_seed(0)
    h = glorot_bound(torch.empty(64, 64))
    w = nn.Parameter(torch.empty(64, 64).uniform_(-h, h))
    q = BinaryConnectWeight(stochastic=True).train()
    mean = torch.stack([q(w).detach() for _ in range(400)]).mean(0)
    assert (mean - w.detach()).abs().mean() < 0.1 * h  # E[b H] = w
    q.eval()
    assert torch.equal(q(w), q(w)) and torch.equal(q(w).sign(), torch.where(w >= 0, 1.0, -1.0))


def test_binary_inputs_use_sign_and_cancel_the_gradient_outside_minus_one_one():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.5], requires_grad=True)
    y = BinaryInput()(x)
    assert y.tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_xnor_weights_scale_each_filter_by_its_mean_magnitude():
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3)
    out = XNORWeight()(w)
    alpha = w.abs().flatten(1).mean(1)
    assert torch.allclose(out, torch.where(w >= 0, 1.0, -1.0) * alpha.view(-1, 1, 1, 1))


def test_xnor_conv_is_a_binary_conv_rescaled_by_alpha_and_the_k_map():
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1))
    sq.quantize_(conv, XNOR(first_last_bits=None, model_input=True), data=[torch.randn(2, 3, 9, 9)])
    layer = conv[0]
    x = torch.randn(2, 3, 9, 9)
    w = layer.weight.detach()
    alpha = w.abs().flatten(1).mean(1).view(1, -1, 1, 1)
    binary = F.conv2d(torch.where(x >= 0, 1.0, -1.0), torch.where(w >= 0, 1.0, -1.0),
                      stride=2, padding=1)  # fmt: skip
    k = F.avg_pool2d(x.abs().mean(1, keepdim=True), 3, stride=2, padding=1)
    expected = binary * alpha * k + layer.bias.view(1, -1, 1, 1)
    assert torch.allclose(layer(x), expected, atol=1e-5)


def test_lab_scale_is_the_curvature_weighted_mean_magnitude_from_the_gradients_seen():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(6, 5))
    q = LABWeight(beta2=0.5).train()
    first = q(w)
    assert torch.allclose(first.detach().abs(), w.detach().abs().mean().expand(6, 5))  # d = 1
    grads = [torch.randn(6, 5), torch.randn(6, 5)]
    for g in grads:
        q(w).backward(g.clone())  # w.grad may adopt and then accumulate into g
    v = 0.5 * (0.5 * 0 + 0.5 * grads[0] ** 2) + 0.5 * grads[1] ** 2
    d = (v / (1 - 0.5**2)).sqrt() + 1e-8
    alpha = (d * w.detach().abs()).sum() / d.sum()
    q.eval()
    assert torch.allclose(q(w).detach(), torch.where(w >= 0, 1.0, -1.0) * alpha)


def test_twn_threshold_and_scale_follow_the_paper():
    torch.manual_seed(0)
    w = torch.randn(32, 16)
    out = TWNWeight()(w)
    delta = 0.7 * w.abs().mean()
    keep = w.abs() > delta
    alpha = w.abs()[keep].mean()
    assert torch.allclose(out, torch.sign(w) * keep * alpha)
    assert len(out.unique()) == 3


def test_ttq_trains_both_scales_and_scales_the_latent_gradient_per_set():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(8, 8))
    q = TTQWeight(threshold=0.05)
    out = q(w)
    delta = 0.05 * w.detach().abs().max()
    pos, neg = w.detach() > delta, w.detach() < -delta
    assert set(out.detach().unique().tolist()) <= {-float(q.w_n), 0.0, float(q.w_p)}
    grad = torch.randn(8, 8)
    out.backward(grad)
    # the paper's sums over each set, divided by the set's size
    assert float(q.w_p.grad) == pytest.approx(float(grad[pos].mean()), rel=1e-5)
    assert float(q.w_n.grad) == pytest.approx(float(-grad[neg].mean()), rel=1e-5)
    scale = torch.where(pos, q.w_p.detach(), torch.where(neg, q.w_n.detach(), torch.ones(())))
    assert torch.allclose(w.grad, grad * scale)


# ------------------------------------------------------------------------------ the layers
@pytest.mark.parametrize("config", CONFIGS, ids=_id)
def test_every_method_trains_through_fit_and_lowers_the_loss(config):
    model = _net()
    data = _batches(4)
    sq.quantize_(model, config, data=data)
    before = sq.evaluate(model, data)["loss"]
    sq.fit(model, data, epochs=8, lr=0.05, progress=False)
    assert sq.evaluate(model, data)["loss"] < before


def test_first_and_last_layers_stay_at_8_bits_and_the_rest_are_binary():
    model = _net()
    report = sq.quantize_(model, BinaryNet(), data=_batches())
    assert report["conv1"] == {"weight_bits": 8, "input_bits": None}
    assert report["conv2"] == {"weight_bits": 1, "input_bits": 1}
    assert report["fc"] == {"weight_bits": 1, "input_bits": 1}
    assert report["head"] == {"weight_bits": 8, "input_bits": 8}
    assert model.conv1.method == "qat" and model.conv2.method == "binarynet"
    assert report.totals["relu_to_hardtanh"] == ["act1", "act2", "act3"]
    assert isinstance(model.act1, nn.Hardtanh)


def test_weight_only_methods_keep_the_relus():
    for config in (BinaryConnect(), XNOR(quantize_inputs=False), LAB(), TWN(), TTQ()):
        model = _net()
        report = sq.quantize_(model, config, data=_batches())
        assert "relu_to_hardtanh" not in report.totals and isinstance(model.act1, nn.ReLU)


def test_a_binarized_input_that_is_never_negative_is_reported():
    class FunctionalRelu(Net):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.bn1(self.conv1(x)))  # not a module: cannot be replaced
            x = self.act2(self.bn2(self.conv2(x)))
            x = torch.flatten(F.adaptive_avg_pool2d(x, 4), 1)
            return self.head(self.act3(self.fc(x)))

    torch.manual_seed(0)
    report = sq.quantize_(FunctionalRelu(), XNOR(), data=_batches())
    assert any(w.startswith("conv2:") for w in report.totals["warnings"])


# -------------------------------------------------------------------------------- storage
@pytest.mark.parametrize("config", CONFIGS, ids=_id)
def test_sqz_stores_binary_and_ternary_weights_compactly_and_loads_them_exactly(config, tmp_path):
    model = _net()
    sq.quantize_(model, config, data=_batches())
    sq.fit(model, _batches(), epochs=1, lr=0.01, progress=False)
    model.eval()
    x = _batches(1)[0][0]
    path = sq.save(model, tmp_path / "b.sqz")
    loaded = sq.load(path, model=Net())  # a fresh float model: rebuilt with Hardtanh too
    assert torch.equal(loaded(x), model(x))
    frozen = frozen_copy(model)
    for name, layer in quantized_layers(loaded):
        assert torch.equal(layer.weight, frozen.get_submodule(name).weight)
    fc = {r.name: r for r in sq.coding.read(path).reports}["fc.weight"]
    bits = 1 if config.bits == 1 else 2
    # 1 bit a binary weight, at most 2 a ternary one (Huffman), plus a float32 scale and
    # zero point per output channel (32) at most, and headers
    assert fc.bytes <= fc.numel * bits / 8 + 8 * 32 + 64
    if isinstance(config, TTQ):
        assert isinstance(loaded.fc.weight_quantizer, FrozenValues)
        assert len(loaded.fc.weight.unique()) == 3
    else:
        assert isinstance(loaded.fc.weight_quantizer, FrozenWeight)
        assert fc.encoding == "qint"


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: BinaryConnect(bits=2), "bits is 1"),
        (lambda: TWN(bits=1), "bits is 2"),
        (lambda: TWN(threshold=0), "threshold"),
        (lambda: TTQ(threshold=1.5), "threshold"),
        (lambda: XNOR(per_layer={"fc": 12}), "1..8"),
    ],
)
def test_impossible_settings_are_config_errors(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


# ------------------------------------------------------------------ command line and recipes
def test_binary_methods_from_the_command_line(tmp_path, capsys, real_data):
    import json

    from squeezer.cli import main

    out = tmp_path / "l5.sqz"
    argv = [
        "quantize", "lenet5", "--method", "xnor", "--dataset", "mnist",
        "--data-dir", str(real_data / "mnist"), "--limit", "512", "--calibration", "2",
        "--finetune-epochs", "1", "--quiet", "--out", str(out), "--json", "-",
    ]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out[captured.out.index("{") :])
    assert result["layers"]["conv2"] == {"weight_bits": 1, "input_bits": 1}
    assert result["sqz_bytes"] == out.stat().st_size < result["float_sqz_bytes"] / 8
    assert main(["inspect", str(out)]) == 0
    assert "int1" in capsys.readouterr().out
    for argv, fragment in [
        (["--method", "twn", "--bits", "4"], "bits is 2"),
        (["--method", "lsq", "--stochastic"], "--stochastic is for --method binaryconnect"),
    ]:
        assert main(["quantize", "lenet5", "--dataset", "mnist", *argv]) != 0
        err = capsys.readouterr().err
        assert fragment in err and "Traceback" not in err


def test_a_recipe_stage_binarizes():
    from squeezer.pipeline import Recipe

    recipe = Recipe.from_dict(
        {"name": "ttq", "stages": [{"quantize": {"method": "ttq", "threshold": 0.1}}]}
    )
    config = recipe.stages[0].config
    assert isinstance(config, TTQ) and config.threshold == 0.1


# ------------------------------------------------------------------ packed binary inference
def _binary_layer(layer: nn.Module, x: torch.Tensor, config) -> nn.Module:
    model = nn.Sequential(layer)
    sq.quantize_(model, config, data=[x])
    return model.eval()


@pytest.mark.parametrize("config", [XNOR(first_last_bits=None, model_input=True),
                                    BinaryNet(first_last_bits=None, model_input=True)],
                         ids=["xnor", "binarynet"])  # fmt: skip
@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (lambda: nn.Conv2d(70, 33, 3, stride=2, padding=1), (3, 70, 11, 9)),
        (lambda: nn.Conv2d(64, 16, (3, 1), padding=(2, 0), dilation=2, bias=False), (2, 64, 7, 7)),
        (lambda: nn.Linear(130, 20), (5, 130)),
        (lambda: nn.Linear(64, 8), (2, 3, 64)),
    ],
    ids=["conv-stride-pad", "conv-dilated", "linear", "linear-3d"],
)
def test_xnor_popcount_fallback_computes_what_the_binary_layer_computes(config, layer, shape):
    from squeezer.quantization.xnor_kernel import packed_twin

    torch.manual_seed(0)
    x = torch.randn(*shape)
    model = _binary_layer(layer(), x, config)
    packed = packed_twin(model[0], use_cpp=False)
    assert torch.allclose(packed(x), model(x), atol=1e-5)


def test_the_cpp_kernel_gives_the_fallbacks_integers_or_warns():
    from squeezer.quantization.xnor_kernel import extension, packed_twin

    torch.manual_seed(0)
    x = torch.randn(2, 96, 9, 9)
    model = _binary_layer(nn.Conv2d(96, 40, 3, padding=1), x, XNOR(first_last_bits=None,
                                                                   model_input=True))  # fmt: skip
    ext = extension()  # built at first use (tens of seconds), or None with a warning
    if ext is None:
        pytest.skip("no C++ toolchain: the fallback is tested above")
    fast, slow = packed_twin(model[0], use_cpp=True), packed_twin(model[0], use_cpp=False)
    assert torch.equal(fast.dots(x), slow.dots(x))
    assert torch.allclose(fast(x), model(x), atol=1e-5)


def test_pack_binary_swaps_only_the_fully_binary_layers_and_keeps_the_outputs():
    from squeezer.quantization.xnor_kernel import PackedBinaryConv2d, pack_binary_

    model = _net()
    sq.quantize_(model, XNOR(), data=_batches())
    model.eval()
    x = _batches(1)[0][0]
    ref = model(x)
    assert pack_binary_(model, use_cpp=False) == ["conv2", "fc"]
    assert isinstance(model.conv2, PackedBinaryConv2d)
    assert torch.allclose(model(x), ref, atol=1e-4)


# ------------------------------------------------------------------ ternary connect (Lin 2016)
def test_ternary_connect_samples_in_training_and_rounds_at_inference() -> None:
    from squeezer.quantization.binary import TernaryConnectWeight

    torch.manual_seed(0)
    w = nn.Parameter(torch.empty(200, 100).uniform_(-0.2, 0.2))
    q = TernaryConnectWeight()
    h = float(torch.tensor(glorot_bound(w), dtype=torch.float32))
    q.train()
    samples = torch.stack([q(w).detach() for _ in range(200)])
    assert set(torch.unique(samples).tolist()) <= {-h, 0.0, h}
    assert float(w.detach().abs().max()) <= h + 1e-7  # the latent is clipped
    # E[w_t] = w: +-H with probability |w| / H
    assert torch.allclose(samples.mean(0), w.detach(), atol=0.35 * h)
    assert float((samples.mean(0) - w.detach()).abs().mean()) < 0.05 * h
    q.eval()
    t = q(w).detach()
    assert torch.equal(t, torch.where(w.abs() > h / 2, torch.sign(w) * h, torch.zeros_like(w)))


def test_power_of_two_rounding() -> None:
    from squeezer.quantization.binary import power_of_two

    x = torch.tensor([3.0, -0.7, 0.4, 0.26, 0.0])
    q = power_of_two(x, exponent_bits=2)  # exponents 2 (round(log2 3)) down to -1
    assert q.tolist() == [4.0, -0.5, 0.5, 0.0, 0.0]  # 0.26 -> 2^-2, below the range


@pytest.mark.parametrize("layer", [nn.Linear(6, 4), nn.Conv2d(3, 4, 3, stride=2, padding=1)])
def test_shift_backward_uses_power_of_two_inputs_for_the_weight_gradient(layer) -> None:
    from squeezer.quantization import TernaryConnect
    from squeezer.quantization.binary import power_of_two

    torch.manual_seed(0)
    model = nn.Sequential(layer)
    x = torch.randn(5, 6) if isinstance(layer, nn.Linear) else torch.randn(2, 3, 7, 7)
    sq.quantize_(model, TernaryConnect(shift_bits=3, first_last_bits=None), data=[x])
    qlayer = model[0]
    qlayer.train()
    x = x.clone().requires_grad_(True)
    torch.manual_seed(1)
    out = qlayer(x)
    out.sum().backward()
    torch.manual_seed(1)
    w = qlayer.quantized_weight().detach()
    # reference: the same product with the input rounded to powers of two for dW only
    w_ref = w.clone().requires_grad_(True)
    xq = power_of_two(x.detach(), 3)
    if isinstance(layer, nn.Linear):
        ref_out, gx_ref = F.linear(xq, w_ref), F.linear(torch.ones_like(out), w.t())
        exact = F.linear(x.detach(), w) + qlayer.bias.detach()
    else:
        ref_out = qlayer._conv_forward(xq, w_ref, None)
        xr = x.detach().clone().requires_grad_(True)
        qlayer._conv_forward(xr, w, None).sum().backward()
        gx_ref = xr.grad
        exact = qlayer._conv_forward(x.detach(), w, qlayer.bias.detach())
    ref_out.sum().backward()
    assert torch.allclose(out.detach(), exact, atol=1e-6)  # the forward pass is exact
    assert torch.allclose(qlayer.weight.grad, w_ref.grad, atol=1e-5)
    assert torch.allclose(x.grad, gx_ref, atol=1e-5)
    assert not torch.allclose(xq, x.detach())


def test_ternary_connect_trains_and_stores_two_bits(tmp_path) -> None:
    from squeezer.quantization import TernaryConnect

    torch.manual_seed(0)
    model = Net()
    x = torch.randn(32, 1, 12, 12)
    y = torch.randint(0, 10, (32,))
    sq.quantize_(model, TernaryConnect(), data=[(x, y)])
    sq.fit(model, [(x, y)], sq.TrainConfig(epochs=2, lr=0.01), progress=False)
    path = tmp_path / "tc.sqz"
    sq.save(model, path)
    back = sq.load(path, Net())
    model.eval()
    assert torch.equal(back(x), frozen_copy(model)(x))
    entries = {t["name"]: t for t in sq.coding.read(path).header["tensors"]}
    inner = [n for n, e in entries.items() if e.get("enc") == "qint" and e.get("bits") == 2]
    assert inner  # the middle layers at 2 bits
