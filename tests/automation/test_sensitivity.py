"""Layer sensitivity scans: each layer compressed alone, the model untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import squeezer as sq
from squeezer.automation import Point, SensitivityReport, sensitivity
from squeezer.errors import ConfigError


def _task(n: int = 1024, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=g)
    w = torch.randn(20, 4, generator=torch.Generator().manual_seed(99))
    y = (x @ w).argmax(1)
    return [(x[i : i + 128], y[i : i + 128]) for i in range(0, n, 128)]


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(),
                         nn.Linear(32, 4))  # fmt: skip


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, list]:
    model = _mlp()
    sq.fit(model, _task(), epochs=30, lr=0.05, weight_decay=0.0)
    val = _task(512, seed=1)
    assert sq.evaluate(model, val)["top1"] > 0.9
    return model.eval(), val


def test_each_layer_alone_and_the_model_untouched(trained) -> None:
    model, val = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scan = sensitivity(model, sq.pruning.Magnitude, [0.0, 0.5, 0.99], val,
                       example_inputs=torch.zeros(1, 20))  # fmt: skip
    assert list(scan.layers) == ["0", "2", "4"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    total = sum(p.numel() for p in model.parameters())
    for name, points in scan.layers.items():
        layer = dict(model.named_modules())[name]
        assert scan.drop(name, 0.0) == pytest.approx(0.0, abs=1e-9)
        half = next(p for p in points if p.value == 0.5)
        # only this layer's weights lost half their entries (biases are not pruned)
        assert half.nonzero == total - layer.weight.numel() // 2
        assert half.params == total
    # removing 99% of a layer costs accuracy somewhere; the first layer, the widest input,
    # is the one that matters most here
    assert max(scan.drop(n, 0.99) for n in scan.layers) > 5.0
    d = scan.to_dict()
    assert d["setting"] == "sparsity" and d["layers"]["0"][2]["drop"] == scan.drop("0", 0.99)
    assert "0" in scan.format() and "+" in scan.format()


def test_channel_ratio_scan_removes_channels_of_one_layer(trained) -> None:
    model, val = trained
    x = torch.zeros(1, 20)
    scan = sensitivity(model, sq.pruning.ChannelPruning(), [0.25, 0.5], val, example_inputs=x)
    assert scan.setting == "ratio"
    p0 = next(p for p in scan.layers["0"] if p.value == 0.5)
    # half of fc0's 64 outputs gone: 32 x (20 + 1) from fc0 and 32 x 32 inputs of fc2
    assert p0.params == scan.baseline.params - 32 * 21 - 32 * 32
    assert p0.flops < scan.baseline.flops
    # the classifier's outputs are the model's: nothing to remove, said so or left unchanged
    last = scan.layers["4"]
    assert all(p.error or p.params == scan.baseline.params for p in last)


def test_bits_scan_with_calibration_data(trained) -> None:
    model, val = trained
    scan = sensitivity(model, sq.quantization.QAT(first_last_bits=None), [8, 2], val,
                       data=val[:2], example_inputs=torch.zeros(1, 20))  # fmt: skip
    assert scan.setting == "bits"
    for name in scan.layers:
        assert abs(scan.drop(name, 8)) < 2.0
    assert max(scan.drop(n, 2) for n in scan.layers) >= max(scan.drop(n, 8) for n in scan.layers)


def test_rank_scan_on_linear_layers(trained) -> None:
    model, val = trained
    scan = sensitivity(model, sq.factorization.SVD(force=True), [0.1, 1.0], val,
                       layers=["0", "2"], example_inputs=torch.zeros(1, 20))  # fmt: skip
    assert scan.setting == "rank"
    for name in ("0", "2"):
        assert scan.drop(name, 1.0) == pytest.approx(0.0, abs=0.3)
        low = next(p for p in scan.layers[name] if p.value == 0.1)
        assert low.params < scan.baseline.params


def test_tolerant_picks_the_last_value_within_the_drop() -> None:
    base = Point(None, top1=0.9)
    scan = SensitivityReport("Magnitude", "sparsity", [0.5, 0.8, 0.9], base, examples=10)
    scan.layers["a"] = [Point(0.5, top1=0.9), Point(0.8, top1=0.895), Point(0.9, top1=0.7)]
    scan.layers["b"] = [Point(0.5, top1=0.8), Point(0.8, top1=0.9), Point(0.9, top1=0.9)]
    scan.layers["c"] = [Point(0.5, error="cannot"), Point(0.8, top1=0.9), Point(0.9, top1=0.9)]
    assert scan.tolerant(1.0) == {"a": 0.8, "b": None, "c": None}
    assert scan.drop("c", 0.5) is None
    assert "n/a c: cannot" in scan.format()


def test_plot_writes_a_png(trained, tmp_path) -> None:
    model, val = trained
    scan = sensitivity(model, sq.pruning.Magnitude, [0.5, 0.9], val)
    path = scan.plot(tmp_path / "s.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_input_is_refused(trained) -> None:
    model, val = trained
    with pytest.raises(ConfigError, match="at least one value"):
        sensitivity(model, sq.pruning.Magnitude, [], val)
    with pytest.raises(ConfigError, match="no field 'depth'"):
        sensitivity(model, sq.pruning.Magnitude, [0.5], val, setting="depth")
    with pytest.raises(ConfigError, match="no layer named fc9"):
        sensitivity(model, sq.pruning.Magnitude, [0.5], val, layers=["fc9"])
    with pytest.raises(ConfigError, match="selects no layer"):
        sensitivity(model, sq.pruning.Magnitude(sparsity=0.5, layers=("nothing*",)), [0.5], val)
