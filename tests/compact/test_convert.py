"""Conversions of trained convs into depthwise-separable pairs and CReLU pairs: exact where
the structure can represent the conv, least squares that never get worse and whose reported
error is the measured one, pairs found through a shuffle, a user's model saved and loaded,
and bad input."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from torch import nn

import squeezer as sq
from squeezer.compact import fit_pairs, fit_separable, patch_moments
from squeezer.errors import ConfigError, ModelError
from squeezer.layers.compact import DepthwiseSeparableConv2d, PairedConv2d


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).pow(2).sum().sqrt() / b.pow(2).sum().sqrt())


def _correlated(n: int, c: int, size: int, seed: int = 0) -> torch.Tensor:
    """Inputs with smooth, channel-correlated structure (not white), like feature maps."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 2, size, size, generator=g)
    base = nn.functional.avg_pool2d(base, 3, 1, 1)
    mix = torch.randn(c, 2, generator=g)
    return torch.einsum("nkhw,ck->nchw", base, mix) + 0.1 * torch.randn(
        n, c, size, size, generator=g
    ) + 0.5  # fmt: skip


def test_separable_is_exact_with_k_squared_filters_per_channel_and_for_separable_weights():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1, stride=2)
    x = _correlated(32, 4, 9)
    exact = copy.deepcopy(conv)
    model = nn.Sequential(exact)
    report = sq.convert_(model, sq.compact.DepthwiseSeparable(multiplier=9), x[:1], data=[x])
    assert isinstance(model[0], DepthwiseSeparableConv2d)
    assert report.converted[0].fit_error < 1e-4  # the ridge term's share
    torch.testing.assert_close(model(x), conv(x), atol=1e-4, rtol=1e-4)
    # a conv whose filters are pointwise x depthwise already: exact at multiplier 1
    sep = nn.Conv2d(4, 6, 3, padding=1)
    with torch.no_grad():
        sep.weight.copy_(torch.randn(6, 4, 1, 1) * torch.randn(1, 4, 3, 3))
    model = nn.Sequential(copy.deepcopy(sep))
    sq.convert_(model, sq.compact.DepthwiseSeparable(iterations=0), x[:1])  # weights alone
    torch.testing.assert_close(model(x), sep(x), atol=1e-4, rtol=1e-4)


def test_alternating_least_squares_never_worsens_and_reports_the_measured_error():
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 8, 3, padding=1)
    x = _correlated(48, 5, 10)
    moment = patch_moments(nn.Sequential(conv), {"0": conv}, [x], 48, "test")["0"]
    _, _, _, errors = fit_separable(conv.weight, conv.bias, moment, 1, 8)
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(errors))
    assert errors[-1] < 0.9 * errors[0]  # the data-aware fit beats the weight SVD's start
    model = nn.Sequential(copy.deepcopy(conv))
    report = sq.convert_(model, sq.compact.DepthwiseSeparable(iterations=8), x[:1], data=[x])
    assert report.converted[0].fit_error == pytest.approx(_rel(model(x), conv(x)), rel=1e-3)
    # fitted on the data, it beats the weight-space fit on that data
    plain = nn.Sequential(copy.deepcopy(conv))
    sq.convert_(plain, sq.compact.DepthwiseSeparable(), x[:1])
    assert _rel(model(x), conv(x)) < 0.8 * _rel(plain(x), conv(x))


def test_crelu_pairs_recover_shuffled_negated_pairs_exactly():
    torch.manual_seed(0)
    half = torch.randn(4, 3, 3, 3)
    scale = torch.tensor([1.0, 2.0, 0.5, 1.5, -1.0, -0.7, -3.0, -1.2])
    source = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    perm = torch.randperm(8)
    conv = nn.Conv2d(3, 8, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_((scale[:, None, None, None] * half[source])[perm])
    x = _correlated(16, 3, 8)
    model = nn.Sequential(copy.deepcopy(conv), nn.ReLU())
    report = sq.convert_(model, sq.compact.CReLUPairs(), x[:1], data=[(x, None)])
    layer = model[0]
    assert isinstance(layer, PairedConv2d) and layer.conv.out_channels == 4
    assert report.converted[0].fit_error < 1e-6
    torch.testing.assert_close(model(x), torch.relu(conv(x)), atol=1e-4, rtol=1e-4)
    # each filter feeds two channels with opposite signs: CReLU's negated pairs
    for k in range(4):
        signs = layer.scale.detach()[layer.source == k]
        assert len(signs) == 2 and float(signs[0] * signs[1]) < 0
    assert report.converted[0].flops_after * 2 == report.converted[0].flops_before


def test_pairs_fit_is_the_best_rank_one_of_each_pair():
    torch.manual_seed(1)
    w, b = torch.randn(6, 2, 3, 3), torch.randn(6)
    _, source, _scale, _, error = fit_pairs(w, b, None)
    # weight space: the error is the pairs' second singular values, found by brute force
    flat = w.reshape(6, -1).double()
    lost = 0.0
    for k in range(3):
        rows = flat[source == k]
        lost += float(torch.linalg.svdvals(rows)[1] ** 2)
    total = float(flat.pow(2).sum() + b.double().pow(2).sum())
    assert error == pytest.approx((lost / total) ** 0.5, rel=1e-6)
    assert sorted(source.tolist()) == [0, 0, 1, 1, 2, 2]


class UserNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.mix = nn.Conv2d(8, 6, 1)
        self.wide = nn.Conv2d(6, 7, 5, padding=2)
        self.head = nn.Linear(7, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.wide(torch.relu(self.mix(torch.relu(self.grouped(torch.relu(self.stem(x)))))))
        return self.head(y.mean((2, 3)))


def test_a_users_model_converts_saves_and_loads_and_says_why_layers_stay(tmp_path):
    torch.manual_seed(0)
    model = UserNet().eval()
    x = torch.randn(20, 1, 12, 12)
    report = sq.convert_(model, sq.compact.DepthwiseSeparable(), x[:2], data=[(x, None)])
    reasons = {r.name: r.reason for r in report.layers if not r.converted}
    assert reasons == {
        "grouped": "groups=2: only ungrouped convolutions",
        "mix": "a 1x1 conv has no spatial filter to separate",
    }
    assert [r.name for r in report.converted] == ["stem", "wide"]
    assert "fitted to the data's inputs" in report.format()
    assert report.to_dict()["layers"][0]["fit_error"] is not None
    sq.save(model, tmp_path / "m.sqz")
    loaded = sq.load(tmp_path / "m.sqz", model=UserNet()).eval()
    assert isinstance(loaded.wide, DepthwiseSeparableConv2d)
    torch.testing.assert_close(loaded(x), model(x))
    pairs = UserNet().eval()
    report = sq.convert_(pairs, sq.compact.CReLUPairs(), x[:2], data=[(x, None)])
    assert {r.name: r.reason for r in report.layers}["wide"] == (
        "7 output channels: pairs need an even number"
    )
    sq.save_checkpoint(pairs, tmp_path / "p.pt")
    back = sq.load_checkpoint(tmp_path / "p.pt", model=UserNet()).eval()
    torch.testing.assert_close(back(x), pairs(x))


def test_max_error_leaves_the_layers_that_fit_badly():
    torch.manual_seed(0)
    model = UserNet().eval()
    x = torch.randn(20, 1, 12, 12)
    with pytest.raises(ModelError, match="no layer could be converted.*above max_error=0.001"):
        sq.convert_(model, sq.compact.DepthwiseSeparable(max_error=1e-3), x[:2],
                    data=[(x, None)])  # fmt: skip
    assert isinstance(model.stem, nn.Conv2d)  # nothing changed


def test_bad_input():
    with pytest.raises(ConfigError, match="multiplier must be >= 1"):
        sq.compact.DepthwiseSeparable(multiplier=0)
    with pytest.raises(ConfigError, match="samples must be >= 1"):
        sq.compact.CReLUPairs(samples=0)
    with pytest.raises(ConfigError, match="max_error must be > 0"):
        sq.compact.CReLUPairs(max_error=0.0)
    model = UserNet()
    with pytest.raises(ModelError, match="grouped cannot be converted: groups=2"):
        sq.convert_(model, sq.compact.CReLUPairs(layers=("stem", "grouped")))
    with pytest.raises(ModelError, match="data gave no examples"):
        sq.convert_(model, sq.compact.CReLUPairs(), torch.randn(1, 1, 8, 8), data=[])
    with pytest.raises(ValueError, match="out_channels must be even"):
        PairedConv2d(3, 5)


def test_separable_then_distill_is_a_recipe_and_the_file_rebuilds(tmp_path):
    from squeezer.pipeline import Recipe, run_recipe

    train, test = sq.data.load("digits")
    torch.manual_seed(0)
    shape = train.input_shape
    model = sq.models.create("lenet5", num_classes=10, in_channels=shape[0], input_size=shape[1])
    sq.fit(model, train, epochs=3, lr=0.05, batch_size=64)
    stages = [
        {"separable": {"layers": ["conv2"], "multiplier": 2, "batches": 2}},
        {"crelu-pairs": {"layers": ["conv1"], "batches": 2}},
        {"distill": {"epochs": 1, "lr": 0.01}},
        {"code": {}},
    ]
    recipe = Recipe.from_dict({"name": "compact", "stages": stages})
    result = run_recipe(model, train, test, recipe)
    assert [r["stage"] for r in result.reports] == ["separable", "crelu-pairs", "distill"]
    assert result.reports[0]["layers"][0]["fit_error"] < 1.0
    assert isinstance(model.conv2, DepthwiseSeparableConv2d)
    assert isinstance(model.conv1, PairedConv2d)
    assert result.top1_after > 0.7
    path = tmp_path / "m.sqz"
    path.write_bytes(result.sqz)
    loaded = sq.load(path)
    x = torch.randn(4, *shape)
    torch.testing.assert_close(loaded(x), model.eval()(x))


def test_convert_command_fits_fine_tunes_measures_and_saves(tmp_path, capsys, real_data):
    import json

    from squeezer.cli import main

    train, _ = sq.data.load("mnist", real_data)
    torch.manual_seed(0)
    model = sq.models.create("lenet5")
    sq.fit(model, train.subset(256), epochs=1, lr=0.05)
    ckpt = tmp_path / "lenet5.pt"
    sq.save_checkpoint(model, ckpt, meta={"dataset": "mnist"})
    out, js = tmp_path / "sep.sqz", tmp_path / "sep.json"
    common = ["--data-dir", str(real_data), "--limit", "256", "--batch-sizes", "1",
              "--min-run-time", "0.01", "--quiet"]  # fmt: skip
    code = main(["convert", str(ckpt), "--method", "separable", "--layers", "conv2",
                 "--fit-batches", "2", "--finetune-epochs", "1", "--distill", *common,
                 "--out", str(out), "--json", str(js)])  # fmt: skip
    printed, err = capsys.readouterr()
    assert code == 0, err
    assert "conv2" in printed and "output error" in printed
    result = json.loads(js.read_text())
    assert result["conversion"]["converted"] == 1 and "top1_after" in result
    assert isinstance(sq.load(out).conv2, DepthwiseSeparableConv2d)
    code = main(["convert", str(ckpt), "--method", "crelu-pairs", "--max-error", "1e-9",
                 *common])  # fmt: skip
    _, err = capsys.readouterr()
    assert code != 0 and "above max_error" in err and "Traceback" not in err
