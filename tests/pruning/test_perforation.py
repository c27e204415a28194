"""Perforated convolution: exact at the evaluated positions, nearest-neighbour elsewhere, the
masks' shapes and rates, the prune_ walker on a zoo model (saved and loaded, FLOPs), and bad
input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import squeezer as sq
from squeezer.errors import ConfigError
from squeezer.layers import PerforatedConv2d, perforation_mask
from squeezer.layers.perforated import nearest_index

# (in, out, kernel, stride, padding, dilation, groups, height, width)
GEOMETRIES = [
    (3, 8, 3, 1, 1, 1, 1, 9, 11),
    (4, 6, 3, 2, 1, 1, 2, 12, 10),
    (4, 4, 3, 1, 2, 2, 1, 9, 9),
    (8, 8, 3, 1, 1, 1, 8, 7, 5),
    (2, 3, 5, 1, 0, 1, 1, 10, 12),
]


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("kind", ["grid", "strided", "uniform"])
def test_evaluated_positions_are_exact_and_the_others_copy_the_nearest(geometry, kind):
    c, o, k, s, p, d, g, h, w = geometry
    torch.manual_seed(0)
    conv = nn.Conv2d(c, o, k, stride=s, padding=p, dilation=d, groups=g).double()
    x = torch.randn(2, c, h, w, dtype=torch.float64)
    ref = conv(x)
    full = PerforatedConv2d.from_conv(conv, rate=1.0, mask=kind)
    torch.testing.assert_close(full(x), ref, rtol=0, atol=1e-12)
    layer = PerforatedConv2d.from_conv(conv, rate=2.0 if kind != "strided" else 4.0, mask=kind,
                                       seed=3)  # fmt: skip
    out = layer(x)
    mask = layer.positions(h, w)
    assert out.shape == ref.shape and mask.shape == ref.shape[-2:]
    torch.testing.assert_close(out[..., mask], ref[..., mask], rtol=0, atol=1e-12)
    kept = mask.flatten().nonzero().flatten()
    source = kept[nearest_index(mask)]  # each position's evaluated neighbour
    torch.testing.assert_close(out.flatten(2), ref.flatten(2)[:, :, source], rtol=0, atol=1e-12)


def test_nearest_is_the_closest_evaluated_position():
    mask = torch.zeros(5, 5, dtype=torch.bool)
    mask[0, 0] = mask[4, 4] = mask[0, 4] = True
    near = nearest_index(mask)  # kept in row-major order: (0,0), (0,4), (4,4)
    assert near.view(5, 5)[1, 1] == 0 and near.view(5, 5)[1, 3] == 1
    assert near.view(5, 5)[3, 4] == 2 and near.view(5, 5)[4, 0] == 0  # tie (0,0)/(4,4): lower


@pytest.mark.parametrize("rate", [2.0, 4.0])
def test_masks_keep_about_one_position_in_rate(rate):
    for h, w in [(24, 24), (28, 20), (10, 10)]:
        for kind in ("grid", "strided", "uniform"):
            m = perforation_mask(h, w, rate, kind)
            assert abs(m.float().mean().item() - 1 / rate) < 0.1 / rate + 1 / (h * w)
    grid = perforation_mask(24, 24, rate, "grid")
    rows, cols = grid.any(1), grid.any(0)
    assert torch.equal(grid, rows[:, None] & cols[None, :])  # whole rows x whole columns
    strided = perforation_mask(24, 24, rate, "strided", seed=5)
    steps = (1, 2) if rate == 2 else (2, 2)
    r, c = strided.any(1).nonzero().flatten(), strided.any(0).nonzero().flatten()
    assert set(r.diff().tolist()) == {steps[0]} or len(r) == 24
    assert set(c.diff().tolist()) == {steps[1]}
    assert torch.equal(
        strided,
        r.new_zeros(24, dtype=torch.bool).index_fill(0, r, True)[:, None]
        & c.new_zeros(24, dtype=torch.bool).index_fill(0, c, True)[None, :],
    )
    assert not torch.equal(perforation_mask(24, 24, rate, "uniform", seed=1),
                           perforation_mask(24, 24, rate, "uniform", seed=2))  # fmt: skip


def test_perforating_a_zoo_model_saves_loads_and_runs_at_other_sizes(tmp_path):
    torch.manual_seed(0)
    model = sq.models.create("lenet5").eval()
    x = torch.randn(2, 1, 28, 28)
    report = sq.prune_(model, sq.pruning.Perforation(rate=2.0, per_layer={"conv2": 4.0}), x)
    rows = {r.name: r for r in report.converted}
    assert rows["conv1"].flops_after == pytest.approx(rows["conv1"].flops_before / 2, rel=0.05)
    assert rows["conv2"].flops_after == pytest.approx(rows["conv2"].flops_before / 4, rel=0.1)
    assert isinstance(model.conv2, PerforatedConv2d) and model.conv2.rate == 4.0
    sq.save(model, tmp_path / "p.sqz")
    loaded = sq.load(tmp_path / "p.sqz").eval()
    torch.testing.assert_close(loaded(x), model(x))
    assert loaded.conv1(torch.randn(1, 1, 40, 36)).shape == (1, 20, 36, 32)


def test_rate_one_and_other_layers_are_reported_not_skipped_silently():
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3, padding="same"), nn.Conv2d(2, 2, 3)
    )
    x = torch.randn(1, 1, 12, 12)
    report = sq.prune_(model, sq.pruning.Perforation(per_layer={"0": 1.0}), x)
    reasons = {r.name: r.reason for r in report.layers}
    assert reasons == {"0": "rate 1: nothing to perforate",
                       "1": "padding='same': give the padding as numbers", "2": ""}  # fmt: skip
    assert [r.name for r in report.converted] == ["2"] and "1 of 3" in report.format()
    with pytest.raises(sq.errors.ModelError, match="no layer could be converted.*rate 1"):
        sq.prune_(nn.Sequential(nn.Conv2d(1, 2, 3)), sq.pruning.Perforation(rate=1.0), x)


def test_bad_input():
    with pytest.raises(ConfigError, match="rate of rate must be >= 1"):
        sq.pruning.Perforation(rate=0.5)
    with pytest.raises(ConfigError, match="rate of conv1 must be >= 1"):
        sq.pruning.Perforation(per_layer={"conv1": 0})
    with pytest.raises(ValueError, match="whole-number rate, got 2.5"):
        perforation_mask(8, 8, 2.5, "strided")
    with pytest.raises(ConfigError, match="mask must be one of grid, strided, uniform"):
        sq.pruning.Perforation(mask="random")
    with pytest.raises(ValueError, match="groups=3 must divide"):
        PerforatedConv2d(4, 6, 3, groups=3)
