"""k-bit quantization-aware training: the quantizers, training through sq.fit, mixed precision,
packed .sqz storage, conversion of 8-bit QAT to int8, the command line and bad input."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import squeezer as sq
from helpers import bn_statistics_
from squeezer.errors import ConfigError, ModelError, SqzFormatError
from squeezer.quantization import (
    LSQ,
    QAT,
    DoReFa,
    FixedPoint,
    freeze_,
    frozen_copy,
    quantized_layers,
)
from squeezer.quantization.fake import (
    FixedPointInput,
    FrozenWeight,
    LSQWeight,
    QATWeight,
    QuantConv2d,
    QuantLinear,
    stochastic_round_ste,
)


class Net(nn.Module):
    """A user's model: conv-BN-ReLU twice, pooling, a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.head = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 4), 1))


def _net() -> Net:
    torch.manual_seed(0)
    return bn_statistics_(Net())


def _batches(n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [
        (torch.randn(16, 1, 12, 12, generator=gen), torch.randint(0, 10, (16,), generator=gen))
        for _ in range(n)
    ]


CONFIGS = [QAT(bits=4), LSQ(bits=4), DoReFa(bits=2), DoReFa(bits=1), FixedPoint(bits=12,
           fraction_bits=8)]  # fmt: skip


# ------------------------------------------------------------------------------ quantizers
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{type(c).__name__}{c.bits}")
def test_weights_take_at_most_2_to_the_bits_values_and_match_their_integer_codes(config):
    model = _net()
    sq.quantize_(model, config, data=_batches())
    for name, layer in quantized_layers(model):
        wq = layer.weight_quantizer
        w = layer.quantized_weight().detach()
        q, scale, zp = wq.integer(layer.weight)
        assert q.min() >= wq.lo and q.max() <= wq.hi, name
        view = (-1,) + (1,) * (w.dim() - 1)
        # The layer computes exactly (q - zero point) * scale: what .sqz stores.
        assert torch.equal((q.float() - zp.reshape(view)) * scale.reshape(view), w), name
        per = w.flatten(1) if scale.numel() > 1 else w.reshape(1, -1)
        assert max(len(row.unique()) for row in per) <= 2**wq.bits, name


def test_symmetric_qat_weights_use_the_int8_observer_scale_per_channel():
    w = torch.randn(4, 3, 3, 3)
    qw = QATWeight(8)
    q, scale, _ = qw.integer(w)
    assert torch.allclose(scale, w.abs().flatten(1).amax(1) / 127.5)
    assert q.min() >= -128 and q.max() <= 127
    assert (qw(w) - w).abs().max() <= scale.max() / 2 + 1e-7  # round-to-nearest error


def test_lsq_step_gets_the_scaled_gradient_and_is_initialized_from_the_weights():
    torch.manual_seed(0)
    w = torch.randn(8, 4, requires_grad=True)
    lsq = LSQWeight(4)
    out = lsq(w)
    assert torch.allclose(lsq.step, 2 * w.detach().abs().mean() / 7**0.5)
    out.sum().backward()
    assert lsq.step.grad is not None and lsq.step.grad.abs() > 0
    assert w.grad is not None and (w.grad != 0).any()  # straight through inside the range


def test_stochastic_rounding_is_unbiased_and_round_to_nearest_is_not():
    torch.manual_seed(0)
    x = torch.full((200_000,), 0.3)
    assert abs(stochastic_round_ste(x).mean().item() - 0.3) < 0.01
    assert torch.round(x).mean().item() == 0.0
    fp = FixedPointInput(8, 4, "stochastic").train()
    v = torch.full((100_000,), 0.3)
    assert abs(fp(v).mean().item() - 0.3) < 0.003  # 0.3 is not on the 1/16 grid
    assert fp.eval()(v).unique().numel() == 1  # nearest at inference


def test_fixed_point_keeps_the_stored_weights_on_the_grid_through_training():
    model = _net()
    sq.quantize_(model, FixedPoint(bits=16, fraction_bits=10, rounding="stochastic"))
    sq.fit(model, _batches(), epochs=1, lr=0.05, progress=False)
    model.train()
    model(_batches(1)[0][0])  # the forward in training rounds the updated weights
    for _, layer in quantized_layers(model):
        scaled = layer.weight.detach() * 2**10
        assert torch.equal(scaled, scaled.round())


# ------------------------------------------------------------------------------- training
@pytest.mark.parametrize("config", CONFIGS[:3], ids=lambda c: type(c).__name__)
def test_every_method_trains_through_fit_and_lowers_the_loss(config):
    torch.manual_seed(0)
    model = _net()
    data = _batches(4)
    sq.quantize_(model, config, data=data)
    before = sq.evaluate(model, data)["loss"]
    sq.fit(model, data, epochs=6, lr=0.05, progress=False)
    assert sq.evaluate(model, data)["loss"] < before


def test_eight_bit_qat_is_close_to_float_and_two_bits_is_not():
    x = _batches(1)[0][0]
    ref = _net()(x)
    diffs = {}
    for bits in (8, 2):
        model = _net()
        sq.quantize_(model, QAT(bits=bits, first_last_bits=None), data=_batches())
        diffs[bits] = (model(x) - ref).abs().max().item()
    assert diffs[8] < 0.05 * ref.abs().max().item() and diffs[2] > 4 * diffs[8]


def test_mixed_precision_per_layer_bits_and_first_last_defaults():
    model = _net()
    report = sq.quantize_(model, LSQ(bits=4, per_layer={"conv2": 2}), data=_batches())
    assert report["conv1"] == {"weight_bits": 8, "input_bits": None}  # first: 8, model input
    assert report["conv2"] == {"weight_bits": 2, "input_bits": 2}
    assert report["head"] == {"weight_bits": 8, "input_bits": 8}  # last layer
    assert isinstance(model.conv2, QuantConv2d) and isinstance(model.head, QuantLinear)
    assert model.conv2.weight_quantizer.integer(model.conv2.weight)[0].abs().max() <= 2


def test_lsq_activations_are_unsigned_after_relu_and_signed_otherwise():
    model = _net()
    sq.quantize_(model, LSQ(bits=4, model_input=True), data=_batches())
    assert bool(model.conv1.input_quantizer.signed)  # the raw input has negative values
    assert not bool(model.conv2.input_quantizer.signed)


# -------------------------------------------------------------------------------- storage
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{type(c).__name__}{c.bits}")
def test_sqz_packs_the_codes_and_loads_back_bit_exactly(config, tmp_path):
    model = _net()
    sq.quantize_(model, config, data=_batches())
    sq.fit(model, _batches(), epochs=1, lr=0.01, progress=False)
    model.eval()
    x = _batches(1)[0][0]
    path = sq.save(model, tmp_path / "q.sqz")
    loaded = sq.load(path, model=Net())
    assert torch.equal(loaded(x), model(x))
    frozen = frozen_copy(model)
    for name, layer in quantized_layers(loaded):
        assert torch.equal(layer.weight, frozen.get_submodule(name).weight)
    contents = sq.coding.read(path)
    packed = {r.name: r for r in contents.reports if r.encoding == "qint"}
    assert set(packed) == {f"{n}.weight" for n, _ in quantized_layers(model)}
    conv2 = packed["conv2.weight"]
    assert conv2.index_bits == model.conv2.weight_bits
    # the codes, at their width, and the scales: no float32 per weight
    assert conv2.bytes <= (conv2.numel * conv2.index_bits + 7) // 8 + 8 * 16 + 64
    float_path = sq.save(_net(), tmp_path / "f.sqz")
    assert path.stat().st_size < float_path.stat().st_size


def test_freeze_keeps_the_outputs_and_leaves_the_original_trainable():
    model = _net()
    sq.quantize_(model, LSQ(bits=3), data=_batches())
    x = _batches(1)[0][0]
    frozen = frozen_copy(model)
    assert torch.equal(frozen(x), model(x))
    assert isinstance(frozen.conv2.weight_quantizer, FrozenWeight)
    assert isinstance(model.conv2.weight_quantizer, LSQWeight)
    freeze_(frozen)  # idempotent
    assert torch.equal(frozen(x), model(x))


def test_checkpoint_of_a_model_in_training_resumes_its_quantizer_state(tmp_path):
    model = _net()
    sq.quantize_(model, LSQ(bits=4), data=_batches())
    sq.fit(model, _batches(), epochs=1, lr=0.01, progress=False)
    sq.save_checkpoint(model, tmp_path / "c.pt")
    back = sq.load_checkpoint(tmp_path / "c.pt", model=Net())
    assert isinstance(back.conv2, QuantConv2d)
    assert torch.equal(back.conv2.input_quantizer.step, model.conv2.input_quantizer.step)
    x = _batches(1)[0][0]
    assert torch.equal(back.eval()(x), model.eval()(x))


def test_a_forged_code_width_is_refused(tmp_path):
    model = _net()
    sq.quantize_(model, QAT(bits=4), data=_batches())
    import json
    import struct
    import zlib

    from squeezer.coding.sqz import MAGIC, _unpack_header

    data = sq.save(model, tmp_path / "q.sqz").read_bytes()
    hlen = struct.unpack_from("<I", data, len(MAGIC))[0]
    text = _unpack_header(data[len(MAGIC) + 4 : len(MAGIC) + 4 + hlen])
    assert b'"bits":4' in text
    head = text.replace(b'"bits":4', b'"bits":0', 1)  # plain JSON: a valid header form
    payload = data[len(MAGIC) + 8 + hlen :]
    forged = MAGIC + struct.pack("<I", len(head)) + head + struct.pack("<I", zlib.crc32(head))
    assert json.loads(head)["format"] == "sqz"
    bad = tmp_path / "bad.sqz"
    bad.write_bytes(forged + payload)
    with pytest.raises(SqzFormatError):
        sq.load(bad, model=Net())


# ------------------------------------------------------------------------------- int8 path
@pytest.mark.slow
def test_eight_bit_qat_converts_to_the_onnxruntime_int8_backend():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torchao")
    model = _net()
    data = _batches()
    sq.quantize_(model, QAT(bits=8), data=data)
    sq.fit(model, data, epochs=1, lr=0.01, progress=False)
    model.eval()
    x = data[0][0]
    q = sq.quantize(model, sq.quantization.Int8(backend="onnxruntime", observer="minmax"), x,
                    calibration=data)  # fmt: skip
    assert q.report.quantized_layers  # real int8 layers
    ref = model(x)
    assert (q(x) - ref).abs().max().item() < 0.1 * ref.abs().max().item()
    assert isinstance(model.conv2, QuantConv2d)  # the QAT model is untouched


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "make",
    [
        lambda: QAT(bits=1),
        lambda: LSQ(bits=9),
        lambda: DoReFa(bits=0),
        lambda: QAT(bits=4, per_layer={"conv1": 12}),
        lambda: FixedPoint(rounding="up"),
    ],
)
def test_bits_outside_the_range_are_config_errors(make):
    with pytest.raises(ConfigError):
        make()


def test_quantizing_twice_or_a_model_without_layers_is_a_model_error():
    model = _net()
    sq.quantize_(model, QAT(bits=4))
    with pytest.raises(ModelError, match="already quantized"):
        sq.quantize_(model, LSQ(bits=4))
    with pytest.raises(ModelError, match="no plain"):
        sq.quantize_(nn.Sequential(nn.ReLU()), QAT(bits=4))


# ---------------------------------------------------------------------------- command line
def test_kbit_quantize_from_the_command_line(tmp_path, capsys, real_data):
    from squeezer.cli import main

    out = tmp_path / "l5.sqz"
    argv = [
        "quantize", "lenet5", "--method", "lsq", "--bits", "4", "--dataset", "mnist",
        "--data-dir", str(real_data / "mnist"), "--limit", "512", "--calibration", "2",
        "--finetune-epochs", "1", "--layer-bits", "fc1=3", "--quiet", "--out", str(out),
        "--json", "-",
    ]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out[captured.out.index("{") :])
    assert result["layers"]["fc1"]["weight_bits"] == 3
    assert result["layers"]["conv2"]["weight_bits"] == 4
    assert {"top1_float", "top1_ptq", "top1_qat"} <= set(result)
    assert result["sqz_bytes"] == out.stat().st_size < result["float_sqz_bytes"]
    assert main(["inspect", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "int3" in shown and "int4" in shown and "3-bit codes in [-4, 3]" in shown
    for argv, fragment in [
        (["--method", "lsq", "--bits", "9"], "--bits must be an integer in 2..8"),
        (["--method", "dorefa", "--bits", "0"], "1..8"),
        (["--method", "qat", "--layer-bits", "fc1"], "PATTERN=BITS"),
        (["--method", "lsq", "--out", str(tmp_path / "x.onnx")], ".sqz"),
    ]:
        assert main(["quantize", "lenet5", "--dataset", "mnist", *argv]) != 0
        err = capsys.readouterr().err
        assert fragment in err and "Traceback" not in err


# --------------------------------------------------------------------------------- recipes
def test_a_recipe_quantizes_fine_tunes_and_packs(tmp_path):
    from squeezer.data import ImageDataset
    from squeezer.pipeline import Recipe, run_recipe

    gen = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (96, 1, 12, 12), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, 10, (96,), generator=gen)
    data = ImageDataset(images, labels, name="toy", mean=[0.5], std=[0.25],
                        classes=[str(i) for i in range(10)])  # fmt: skip
    recipe = Recipe.from_dict({
        "name": "lsq4", "batch_size": 32,
        "stages": [{"quantize": {"method": "lsq", "bits": 4, "batches": 2}},
                   {"fine-tune": {"epochs": 1, "lr": 0.01}}, {"code": {}}],
    })  # fmt: skip
    model = _net()
    result = run_recipe(model, data, data, recipe)
    assert isinstance(model.conv2, QuantConv2d) and model.conv2.weight_bits == 4
    contents = sq.coding.parse(result.sqz)
    assert {r.name for r in contents.reports if r.encoding == "qint"} >= {"conv2.weight"}
    with pytest.raises(ConfigError, match="method must be one of"):
        Recipe.from_dict({"name": "x", "stages": [{"quantize": {"method": "int3"}}]})


def test_qat_keeps_the_calibrated_activation_range_and_tracks_it_without_calibration():
    from squeezer.quantization.fake import QATInput

    calibrated = _net()
    sq.quantize_(calibrated, QAT(bits=4), data=_batches())
    before = calibrated.conv2.input_quantizer.max_val.clone()
    assert bool(calibrated.conv2.input_quantizer.calibrated)
    calibrated.train()
    with torch.no_grad():
        for x, _ in _batches(2):
            calibrated(x * 3)
    assert torch.equal(calibrated.conv2.input_quantizer.max_val, before)
    lazy = QATInput(4).train()  # no calibration: the first batch, then a moving average
    lazy(torch.rand(1000))
    start = lazy.max_val.clone()
    lazy(torch.rand(1000) * 10)
    assert bool(lazy.initialized) and not bool(lazy.calibrated)
    assert start < lazy.max_val < start + 0.1 * (10 - start)
