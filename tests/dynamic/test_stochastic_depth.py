"""Stochastic depth: the linear survival schedule on the zoo's ResNets, per-batch drops in
training at the survival rate, the inference rule, training through sq.fit, saving, and bad
input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import squeezer as sq
from squeezer.dynamic import StochasticDepthLayer
from squeezer.errors import ConfigError


def test_survival_decays_linearly_over_the_zoo_resnets_blocks(tmp_path):
    torch.manual_seed(0)
    model = sq.models.create("resnet56", num_classes=10, in_channels=1, input_size=28).eval()
    x = torch.randn(2, 1, 28, 28)
    report = sq.convert_(model, sq.dynamic.StochasticDepth(final_survival=0.5), x)
    wrapped = [m for m in model.modules() if isinstance(m, StochasticDepthLayer)]
    assert len(wrapped) == len(report.converted) == 27
    expect = [1 - (i + 1) / 27 * 0.5 for i in range(27)]
    assert [w.survival for w in wrapped] == pytest.approx(expect)
    assert wrapped[-1].survival == 0.5 and isinstance(model.layers[0][0].bn2.module, nn.BatchNorm2d)
    sq.save(model, tmp_path / "sd.sqz")
    loaded = sq.load(tmp_path / "sd.sqz").eval()
    assert loaded.layers[2][8].bn2.survival == 0.5
    torch.testing.assert_close(loaded(x), model(x))


def test_inference_scales_the_branch_and_training_drops_whole_batches():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3).eval()
    layer = StochasticDepthLayer(bn, survival=0.7)
    x = torch.randn(4, 3, 5, 5)
    layer.eval()
    torch.testing.assert_close(layer(x), bn(x) * 0.7)
    layer.train()
    bn.train()
    outs = [layer(x) for _ in range(2000)]
    dropped = [bool((o == 0).all()) for o in outs]
    assert 0.26 < sum(dropped) / 2000 < 0.34  # 1 - 0.7, +- 4 standard deviations
    kept = next(o for o, d in zip(outs, dropped, strict=True) if not d)
    assert not (kept == 0).any()
    rows = StochasticDepthLayer(nn.Identity(), survival=0.5, mode="row").train()
    y = rows(torch.ones(4000, 2))
    assert set(y[:, 0].tolist()) == {0.0, 1.0} and 0.45 < float(y[:, 0].mean()) < 0.55
    assert torch.equal(y[:, 0], y[:, 1])  # one draw per example


def test_a_user_model_names_its_branch_ends_and_trains():
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x + self.body(x))

    torch.manual_seed(0)
    model = nn.Sequential(Block(), Block(), nn.Linear(8, 3))
    report = sq.convert_(model, sq.dynamic.StochasticDepth(final_survival=0.8, layers=("*.body",)),
                         torch.randn(2, 8))  # fmt: skip
    assert [r.name for r in report.converted] == ["0.body", "1.body"]
    assert [model[0].body.survival, model[1].body.survival] == pytest.approx([0.9, 0.8])
    data = [(torch.randn(16, 8), torch.randint(0, 3, (16,))) for _ in range(4)]
    before = model[2].weight.detach().clone()
    sq.fit(model, data, epochs=1, lr=0.1, verbose=False)
    assert not torch.equal(before, model[2].weight)


def test_bad_input():
    with pytest.raises(ConfigError, match=r"final_survival must be in \(0, 1\]"):
        sq.dynamic.StochasticDepth(final_survival=0.0)
    with pytest.raises(ConfigError, match="mode must be"):
        sq.dynamic.StochasticDepth(mode="layer")
    with pytest.raises(ValueError, match="survival must be in"):
        StochasticDepthLayer(nn.Identity(), survival=1.5)
    with pytest.raises(sq.errors.ModelError, match="no layer could be converted"):
        sq.convert_(nn.Sequential(nn.Linear(2, 2)), sq.dynamic.StochasticDepth(), torch.randn(1, 2))
