"""Sparse variational dropout: the KL approximation, the local reparameterization's variance,
the penalty fit adds by itself, finishing into a mask, .sqz storage and bad input."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import squeezer as sq
from squeezer.errors import ConfigError, ModelError
from squeezer.pruning import SparseVD, VariationalDropoutWeight, WeightMask, log_alpha_of
from squeezer.pruning.variational import K1, kl_at
from squeezer.train import PenaltyWarmup, finish_, model_penalty


class Net(nn.Module):
    """A user's model: a strided, padded, grouped convolution and two linears."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2)
        self.fc1 = nn.Linear(8 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x)).flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))


def _clear_magnitudes_(model: nn.Module) -> None:
    """Every weight at magnitude 0.05, so none is removed for being tiny at the initial
    variance."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                theta = m.parametrizations.weight.original
                theta.copy_(0.05 * torch.sign(theta))


def _vd(module: nn.Module) -> VariationalDropoutWeight:
    return next(
        p for p in module.parametrizations.weight if isinstance(p, VariationalDropoutWeight)
    )


def test_kl_approximation_falls_with_log_alpha_and_vanishes_at_large_alpha() -> None:
    values = [kl_at(a) for a in (-8.0, -4.0, 0.0, 4.0, 8.0)]
    assert all(a > b for a, b in itertools.pairwise(values))
    assert kl_at(10.0) == pytest.approx(0.0, abs=1e-3)  # the log-uniform prior's limit
    assert kl_at(-10.0) > K1  # little noise: the KL is large


def test_penalty_is_the_sum_of_per_weight_kls() -> None:
    layer = nn.Linear(3, 2)
    sq.prune_(layer, SparseVD(init_log_sigma2=-4.0))
    vd = _vd(layer)
    theta = layer.parametrizations.weight.original
    la = (vd.log_sigma2 - torch.log(theta**2 + 1e-8)).clamp(-10, 10).detach()
    expected = sum(kl_at(float(a)) for a in la.flatten())
    assert float(vd.penalty(theta).detach()) == pytest.approx(expected, rel=1e-5)
    assert float(model_penalty(layer).detach()) == pytest.approx(expected, rel=1e-5)


def test_training_output_has_the_local_reparameterization_variance() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(5, 2)
    sq.prune_(layer, SparseVD(init_log_sigma2=-2.0))
    x = torch.randn(1, 5).expand(20000, 5)
    layer.train()
    with torch.no_grad():
        out = layer(x)
    theta = layer.parametrizations.weight.original.detach()
    mean = F.linear(x[:1], theta, layer.bias.detach())
    var = F.linear(x[:1] ** 2, torch.full_like(theta, math.exp(-2.0)))
    assert torch.allclose(out.mean(0), mean[0], atol=4 * float(var.max().sqrt()) / 100)
    assert torch.allclose(out.var(0), var[0], rtol=0.05)


def test_eval_is_deterministic_and_drops_weights_above_the_threshold() -> None:
    torch.manual_seed(0)
    model = Net()
    sq.prune_(model, SparseVD())
    vd = _vd(model.fc1)
    _clear_magnitudes_(model)
    with torch.no_grad():  # a third of fc1's weights pure noise
        vd.log_sigma2[:, ::3] = 5.0
    model.eval()
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(model(x), model(x))
    w = model.fc1.weight
    assert bool((w[:, ::3] == 0).all())
    assert bool((w[:, 1::3] != 0).all())
    model.train()
    assert not torch.equal(model(x), model(x))  # training form samples


def test_conv_variance_uses_the_layers_stride_padding_and_groups() -> None:
    conv = nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2)
    sq.prune_(conv, SparseVD(init_log_sigma2=-3.0))
    conv.train()
    x = torch.randn(2, 4, 9, 9)
    out = conv(x)
    assert out.shape == (2, 8, 5, 5)


def test_fit_adds_the_kl_and_it_raises_alpha() -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 4, 8, 8)
    y = torch.randint(0, 3, (256,))
    batches = [(x[i : i + 64], y[i : i + 64]) for i in range(0, 256, 64)]

    def mean_log_alpha(with_penalty: bool) -> float:
        torch.manual_seed(0)
        model = Net()
        sq.prune_(model, SparseVD())
        if not with_penalty:
            for p in sq.train.trained_parametrizations(model).values():
                p.scale = 0.0
        cfg = sq.TrainConfig(epochs=3, optimizer="adam", lr=0.01, weight_decay=0)
        history = sq.fit(model, batches, cfg, progress=False).history
        assert ("penalty" in history[-1]) is with_penalty
        return float(log_alpha_of(model.fc1).mean())

    assert mean_log_alpha(True) > mean_log_alpha(False) + 1.0


def test_log_sigma2_gets_no_weight_decay() -> None:
    model = Net()
    sq.prune_(model, SparseVD())
    cfg = sq.TrainConfig(weight_decay=5e-4)
    opt = sq.train.make_optimizer(cfg, list(model.parameters()))
    decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decay[id(_vd(model.fc1).log_sigma2)] == 0.0
    assert decay[id(model.fc1.bias)] == 5e-4


def test_warmup_ramps_the_scale_and_leaves_it_at_one() -> None:
    model = Net()
    sq.prune_(model, SparseVD())
    seen: list[float] = []

    class Spy(sq.train.Callback):
        def on_batch_start(self, state: sq.train.TrainState) -> None:
            seen.append(_vd(state.model.fc1).scale)

    batches = [(torch.randn(8, 4, 8, 8), torch.randint(0, 3, (8,))) for _ in range(4)]
    sq.fit(model, batches, sq.TrainConfig(epochs=2, lr=1e-3), callbacks=[PenaltyWarmup(2), Spy()],
           progress=False)  # fmt: skip
    assert seen == pytest.approx([0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875])
    assert _vd(model.fc1).scale == 1.0


def test_finish_turns_it_into_a_mask_with_the_same_function(tmp_path) -> None:
    torch.manual_seed(0)
    model = Net()
    sq.prune_(model, SparseVD())
    _clear_magnitudes_(model)
    with torch.no_grad():
        _vd(model.fc1).log_sigma2[::2] = 4.0
        _vd(model.conv).log_sigma2[:3] = 4.0
    model.eval()
    x = torch.randn(3, 4, 8, 8)
    before = model(x)
    path = tmp_path / "vd.sqz"
    sq.save(model, path)  # the coder finishes a copy by itself
    report = finish_(model)
    assert report["fc1.weight"] == {"kept": 128 * 8, "of": 128 * 16}
    mask = next(p for p in model.fc1.parametrizations.weight if isinstance(p, WeightMask))
    assert not bool(mask.mask[::2].any()) and bool(mask.mask[1::2].all())
    assert not model.fc1._forward_hooks  # the sampling hook is gone
    model.train()
    assert torch.equal(model.eval()(x), before)
    back = sq.load(path, Net())
    assert torch.equal(back(x), before)
    assert float((back.fc1.weight == 0).float().mean()) == 0.5


def test_vd_on_a_masked_layer_keeps_the_pruned_weights_at_zero() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(20, 10)
    mask = torch.rand(10, 20) > 0.5
    mask[:, 0] = False  # input 0 reaches nothing
    sq.pruning.set_mask(layer, mask)
    sq.prune_(layer, SparseVD(init_log_sigma2=-1.0))
    layer.train()
    x = torch.zeros(4, 20)
    x[:, 0] = 3.0
    out = layer(x).detach()  # no noise from it (beyond the 1e-4 of sqrt(var + 1e-8))
    assert torch.allclose(out, layer.bias.detach().expand(4, 10), atol=1e-3)
    x[:, 1] = 3.0  # input 1 reaches kept weights, which carry noise of std ~1.8
    assert (layer(x).detach() - out).abs().max() > 0.1
    finish_(layer)
    assert bool((layer.weight[~mask] == 0).all())


def test_bad_input() -> None:
    with pytest.raises(ConfigError, match="threshold"):
        SparseVD(threshold=20.0)
    with pytest.raises(ConfigError, match="init_log_sigma2"):
        SparseVD(init_log_sigma2=1.0)
    with pytest.raises(ModelError, match="supports Linear"):
        sq.prune_(nn.Sequential(nn.Embedding(5, 3)), SparseVD(layer_types=("Embedding",)))
    with pytest.raises(ModelError, match="no layer"):
        sq.prune_(nn.Sequential(nn.ReLU()), SparseVD())
    shared = nn.Linear(8, 8)
    sq.quantize_(shared, sq.quantization.KMeansSharing(fc_bits=2))
    with pytest.raises(ModelError, match="SharedWeights"):
        sq.prune_(shared, SparseVD())


def test_recipe_stage_trains_and_leaves_masks() -> None:
    recipe = sq.pipeline.Recipe.from_dict(
        {"name": "vd", "stages": [{"sparse-vd": {"epochs": 1, "lr": 0.01, "warmup": 0}}]}
    )
    torch.manual_seed(0)
    model = Net()
    x = torch.randn(64, 4, 8, 8)
    y = torch.randint(0, 3, (64,))
    stage = recipe.stages[0]
    report = sq.pipeline.run.run_stage(model, stage, recipe, [(x, y)], (x[:1],))
    assert report["method"] == "sparse variational dropout"
    assert set(report["sparsity"]) == {"conv", "fc1", "fc2"}
    assert not sq.train.trained_parametrizations(model)
    assert all(
        any(isinstance(p, WeightMask) for p in m.parametrizations.weight)
        for m in (model.conv, model.fc1, model.fc2)
    )
    with pytest.raises(ConfigError, match="warmup"):
        sq.pipeline.Recipe.from_dict({"name": "v", "stages": [{"sparse-vd": {"warmup": -1}}]})


def test_fold_dead_units_keeps_the_function_and_zeroes_the_dead() -> None:
    from squeezer.pruning import fold_dead_units_

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        model[2].bias.zero_()
    mask1 = torch.ones(8, 6, dtype=torch.bool)
    mask1[[1, 4]] = False  # units 1 and 4 get no input: constant relu(b)
    mask2 = torch.ones(3, 8, dtype=torch.bool)
    mask2[:, 6] = False  # unit 6 is read by nobody
    sq.pruning.set_mask(model[0], mask1)
    sq.pruning.set_mask(model[2], mask2)
    with torch.no_grad():
        model[0].bias[1], model[0].bias[4] = 0.7, -0.3  # relu: 0.7 and 0
    x = torch.randn(10, 6)
    before = model(x)
    report = fold_dead_units_(model, [("0", "2")])
    assert report["0 -> 2"] == {"constant": 2, "unread": 1, "live": 5}
    assert torch.allclose(model(x), before, atol=1e-6)
    b = model[0].bias.detach()
    assert float(b[1]) == float(b[4]) == float(b[6]) == 0
    assert bool((model[0].weight[6] == 0).all()) and bool((model[2].weight[:, [1, 4]] == 0).all())
    with pytest.raises(ModelError, match="must be Linear"):
        fold_dead_units_(model, [("0", "1")])


def test_fold_dead_units_after_sharing_bakes_the_shared_values() -> None:
    from squeezer.pruning import fold_dead_units_

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    mask = torch.ones(8, 6, dtype=torch.bool)
    mask[2] = False
    sq.pruning.set_mask(model[0], mask)
    sq.quantize_(model, sq.quantization.KMeansSharing(fc_bits=3, bias_bits=3))
    x = torch.randn(10, 6)
    before = model(x)
    fold_dead_units_(model, [("0", "2")])
    assert torch.allclose(model(x), before, atol=1e-6)
    assert float(model[0].bias.detach()[2]) == 0.0
