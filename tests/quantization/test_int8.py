"""Post-training int8: observers, both backends, the user's own model, save/load, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import squeezer as sq
from helpers import bn_statistics_
from squeezer.errors import ConfigError, ExportError, ModelError
from squeezer.quantization import Int8, QuantizedModel, load_int8
from squeezer.quantization.observers import entropy_range, kl_threshold, percentile_range

pytest.importorskip("torchao")


class Block(nn.Module):
    """A residual block that calls one ReLU module twice, as torchvision's ResNets do."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.block = Block(16)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.block(self.stem(x))), 1))


def _net() -> Net:
    torch.manual_seed(0)
    return bn_statistics_(Net())


def _batches(n: int = 4, size: int = 16) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    return [torch.randn(size, 3, 12, 12, generator=gen) for _ in range(n)]


# ------------------------------------------------------------------------------- observers
def test_percentile_range_clips_the_outliers_minmax_would_keep():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.standard_normal(100_000), [60.0]])
    hist, _ = np.histogram(values, bins=2048, range=(values.min(), values.max()))
    lo, hi = percentile_range(hist, values.min(), values.max(), 99.99)
    assert 3.0 < hi < 5.0 and -5.0 < lo < -3.0


def test_entropy_threshold_is_not_pulled_down_by_the_spike_of_relu_zeros():
    # Half of a ReLU's outputs are exact zeros; left in the first bin they dominated the KL
    # search, which then clipped a half-normal at 1.74 (of 4.73), 37% of its range.
    rng = np.random.default_rng(0)
    values = np.maximum(rng.standard_normal(200_000), 0)
    hist, _ = np.histogram(values, bins=2048, range=(0, values.max()))
    _, hi = entropy_range(hist.astype(np.float64), 0.0, float(values.max()))
    assert 0.75 * values.max() < hi <= values.max()


def test_entropy_threshold_clips_a_long_tail_and_keeps_a_compact_distribution():
    rng = np.random.default_rng(0)
    tail = np.concatenate([np.abs(rng.standard_normal(200_000)), np.linspace(5, 80, 40)])
    hist, _ = np.histogram(tail, bins=2048, range=(0, 80))
    _, hi = entropy_range(hist, 0.0, 80.0)
    assert 3.0 < hi < 20.0  # far below the maximum, above the bulk
    flat = np.ones(2048)  # a uniform distribution has nothing to clip
    assert kl_threshold(flat) == 2048
    lo, hi = entropy_range(np.histogram(rng.standard_normal(50_000), 2048, (-6, 6))[0], -6, 6)
    assert lo < 0 < hi and abs(lo + hi) < 1.0  # both signs: a symmetric threshold


# ------------------------------------------------------------------------------ quantization
@pytest.mark.parametrize("observer", ["minmax", "percentile", "mse", "entropy"])
def test_static_int8_on_onnxruntime_is_close_to_float_for_every_observer(observer):
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = _batches(1, 8)[0]
    q = sq.quantize(net, Int8(backend="onnxruntime", observer=observer), x, calibration=_batches())
    assert isinstance(q, QuantizedModel)
    assert q.report.quantized_layers == ["stem.0", "block.conv1", "block.conv2", "fc"]
    assert q.report.calibration_examples == 64
    with torch.no_grad():
        ref = net(x)
    err = (q(x) - ref).norm() / ref.norm()  # 0.04 to 0.07 here, depending on the observer
    assert err < 0.1, err
    assert q(x).shape == (8, 10) and q(x[:1]).shape == (1, 10)  # the batch stays dynamic
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # untouched
    assert q.report.int8_bytes < q.report.float_bytes / 3


@pytest.mark.slow
def test_static_int8_on_inductor_saves_and_loads(tmp_path):
    net = _net()
    x = _batches(1, 8)[0]
    q = sq.quantize(net, Int8(backend="inductor"), x, calibration=_batches())
    with torch.no_grad():
        ref = net(x)
    assert ((q(x) - ref).norm() / ref.norm()) < 0.1
    for n in (1, 3, 8):  # new batch sizes after the first (each compiles anew)
        assert q(x[:n]).shape == (n, 10)
    path = q.save(tmp_path / "net.pt2")
    again = load_int8(path)
    assert torch.allclose(again(x), q(x), atol=1e-5)


def test_onnxruntime_int8_saves_as_qdq_onnx_and_loads(tmp_path):
    import onnx

    net = _net()
    x = _batches(1, 8)[0]
    q = sq.quantize(net, Int8(backend="onnxruntime"), x, calibration=_batches())
    path = q.save(tmp_path / "net.onnx")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert torch.equal(load_int8(path, threads=1)(x), q(x))


def _ort_graph(q, tmp_path):
    """The saved int8 ONNX and the graph ONNX Runtime actually runs after its fusions."""
    import onnx
    import onnxruntime as ort

    path = q.save(tmp_path / "net.onnx")
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return onnx.load(str(path)), onnx.load(str(tmp_path / "optimized.onnx"))


def test_onnxruntime_int8_runs_every_conv_and_the_residual_add_on_integer_kernels(tmp_path):
    import collections

    q = sq.quantize(_net(), Int8(backend="onnxruntime"), _batches(1, 2)[0],
                    calibration=_batches())  # fmt: skip
    _, optimized = _ort_graph(q, tmp_path)
    ops = collections.Counter(n.op_type for n in optimized.graph.node)
    # stem conv, two block convs: all integer; the residual sum too; nothing float left
    assert ops["QLinearConv"] == 3 and ops["QLinearAdd"] == 1, ops
    assert ops["Conv"] == 0 and ops["Add"] == 0, ops
    assert sorted(q.report.quantized_layers) == ["block.conv1", "block.conv2", "fc", "stem.0"]


@pytest.mark.parametrize(("reduce_range", "top"), [(None, 64), (False, 128)])
def test_onnxruntime_weights_are_seven_bit_unless_asked_for_full_range(tmp_path, reduce_range, top):
    from onnx import numpy_helper

    q = sq.quantize(_net(), Int8(backend="onnxruntime", reduce_range=reduce_range),
                    _batches(1, 2)[0], calibration=_batches())  # fmt: skip
    saved, _ = _ort_graph(q, tmp_path)
    codes = [numpy_helper.to_array(t) for t in saved.graph.initializer if t.data_type == 3]
    assert codes  # int8 weights are stored
    largest = max(int(abs(c.astype(int)).max()) for c in codes)
    assert top // 2 < largest <= top  # per-channel scales use the whole range they are given
    assert q.report.weight_bits == (7 if top == 64 else 8)


def test_onnxruntime_activation_ranges_come_from_squeezers_observer(tmp_path):
    from onnx import numpy_helper

    batches = _batches()
    q = sq.quantize(_net(), Int8(backend="onnxruntime", observer="minmax"), batches[0][:2],
                    calibration=batches)  # fmt: skip
    saved, _ = _ort_graph(q, tmp_path)
    weights = {t.name: numpy_helper.to_array(t) for t in saved.graph.initializer}
    model_input = saved.graph.input[0].name
    first = next(n for n in saved.graph.node
                 if n.op_type == "QuantizeLinear" and n.input[0] == model_input)  # fmt: skip
    x = torch.cat(batches)
    expected = (float(x.max()) - float(x.min())) / 255  # the observed min and max, 256 levels
    assert float(weights[first.input[1]]) == pytest.approx(expected, rel=1e-3)


def test_quantized_model_evaluates_and_measures_against_float():
    net = _net()
    x = _batches(1, 2)[0]
    q = sq.quantize(net, Int8(backend="onnxruntime"), x, calibration=_batches())
    labels = net(torch.cat(_batches())).argmax(1)
    batches = list(zip(_batches(), labels.split(16), strict=True))
    top1 = sq.evaluate(q, batches)["top1"]  # agreement with the float model's predictions
    agree = (q(torch.cat(_batches())).argmax(1) == labels).float().mean()
    assert top1 == pytest.approx(float(agree)) and top1 > 0.5
    m = sq.measure(q, x[:1], baseline=net, batch_sizes=(2,), min_run_time=0.01,
                   backend="onnxruntime")  # fmt: skip
    assert m.params == m.baseline.params and m.flops == m.baseline.flops
    assert m.size_bytes < m.baseline.size_bytes / 3
    assert m.latency[0].median_ms > 0 and "quantized model on onnxruntime" in m.backend


def test_excluded_layers_stay_float():
    net = _net()
    x = _batches(1, 2)[0]
    q = sq.quantize(net, Int8(backend="onnxruntime", exclude=("fc",)), x, calibration=_batches())
    assert q.report.float_layers == ["fc"] and "fc" not in q.report.quantized_layers


@pytest.mark.parametrize("backend", ["onnxruntime", "inductor"])
def test_dynamic_int8_quantizes_linear_layers_without_calibration(backend):
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)).eval()
    x = torch.randn(4, 64)
    q = sq.quantize(mlp, Int8(backend=backend, dynamic=True), x)
    assert q.report.quantized_layers == ["0", "2"]
    with torch.no_grad():
        ref = mlp(x)
    assert ((q(x) - ref).norm() / ref.norm()) < 0.1


# ------------------------------------------------------------------------------- bad input
def test_static_int8_without_calibration_is_refused():
    with pytest.raises(ConfigError, match="calibration"):
        sq.quantize(_net(), Int8(backend="onnxruntime"), _batches(1, 2)[0])


def test_in_place_verb_points_to_quantize():
    with pytest.raises(ConfigError, match=r"sq\.quantize\("):
        sq.quantize_(_net(), Int8())


@pytest.mark.parametrize(
    ("fields", "match"),
    [({"backend": "tflite"}, "backend"), ({"observer": "l1"}, "observer"),
     ({"percentile": 40}, "percentile"), ({"max_batches": 0}, "max_batches"),
     ({"reduce_range": True}, "reduce_range applies to backend='onnxruntime'")],
)  # fmt: skip
def test_bad_configs_fail_clearly(fields, match):
    with pytest.raises(ConfigError, match=match):
        Int8(**fields)


def test_a_model_without_layers_to_quantize_fails_clearly():
    with pytest.raises(ModelError, match="no Conv2d or Linear"):
        sq.quantize(nn.ReLU(), Int8(backend="onnxruntime"), torch.randn(2, 3),
                    calibration=[torch.randn(2, 3)])  # fmt: skip


@pytest.mark.parametrize(
    ("backend", "message"),
    [("inductor", "cannot trace DataDependent"), ("onnxruntime", "cannot export DataDependent")],
)
def test_an_untraceable_model_fails_with_the_reason(backend: str, message: str):
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # control flow on values: torch.export cannot trace it
                return self.fc(x)
            return -self.fc(x)

    with pytest.raises(ExportError, match=message):
        sq.quantize(DataDependent(), Int8(backend=backend), torch.randn(2, 4),
                    calibration=[torch.randn(2, 4)])  # fmt: skip


def test_a_quantized_model_refuses_training():
    q = sq.quantize(_net(), Int8(backend="onnxruntime"), _batches(1, 2)[0],
                    calibration=_batches(1))  # fmt: skip
    q.eval()
    with pytest.raises(ModelError, match="inference only"):
        q.train()


# ----------------------------------------------------------------------------- command line
def test_quantize_from_the_command_line(tmp_path, capsys: pytest.CaptureFixture, real_data) -> None:
    import json

    from squeezer.cli import main

    out = tmp_path / "l5.onnx"
    argv = [
        "quantize", "lenet5", "--backend", "onnxruntime", "--dataset", "mnist",
        "--data-dir", str(real_data / "mnist"), "--limit", "256", "--calibration", "2",
        "--batch-sizes", "2", "--min-run-time", "0.01", "--out", str(out), "--json", "-",
    ]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["calibration_examples"] == 128 and out.exists()
    assert 0 <= result["top1_int8"] <= 1 and result["latency"][0]["int8_ms"] > 0
    assert load_int8(out)(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert main(["quantize", "lenet5", "--bits", "4"]) != 0
    assert "8 bits" in capsys.readouterr().err
    assert main(["quantize", "lenet5"]) != 0
    assert "calibration needs data" in capsys.readouterr().err
    assert main(["quantize", "lenet5", "--out", str(tmp_path / "x.pt2"), "--backend",
                 "onnxruntime"]) != 0  # fmt: skip
    assert ".onnx" in capsys.readouterr().err


@pytest.mark.slow
def test_ceil_mode_pools_survive_the_inductor_int8_path():
    # Inductor's int8 max pool ignores ceil_mode (a 1x1 map pooled 2x2 became 0x0); squeezer
    # rewrites such pools as -inf padding plus a floor-mode pool before quantizing.
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
        nn.MaxPool2d(2, ceil_mode=True), nn.Flatten(), nn.Linear(8 * 1 * 1, 4),
    ).eval()  # fmt: skip
    x = torch.randn(4, 3, 3, 3)
    q = sq.quantize(net, Int8(backend="inductor"), x, calibration=[torch.randn(8, 3, 3, 3)])
    with torch.no_grad():
        ref = net(x)
    assert q(x).shape == ref.shape
    assert ((q(x) - ref).norm() / ref.norm()) < 0.1
    assert isinstance(net[2], nn.MaxPool2d)  # the user's model keeps its pools
