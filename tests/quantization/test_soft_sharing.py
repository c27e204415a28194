"""Soft weight-sharing: the mixture's density, its initial means, the pull towards the
components, snapping into shared weights that the .sqz file stores exactly, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import squeezer as sq
from squeezer.errors import ConfigError, ModelError
from squeezer.quantization import (
    GaussianMixturePrior,
    SharedWeights,
    SoftWeightSharing,
    codebook_of,
    mixture_of,
)
from squeezer.train import finish_, model_penalty


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3)
        self.fc1 = nn.Linear(6 * 6 * 6, 32)
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x)).flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))


def test_log_prob_is_the_mixture_density() -> None:
    prior = GaussianMixturePrior(
        torch.tensor([-0.5, 0.5]), torch.log(torch.tensor([0.01, 0.04, 0.09])), 0.8
    )
    with torch.no_grad():
        prior.logits.copy_(torch.tensor([0.0, math.log(3.0)]))  # 1 : 3 among the others
    w = torch.tensor([0.0, 0.3, -0.6])

    def normal(x: float, mu: float, var: float) -> float:
        return math.exp(-((x - mu) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var)

    for x, got in zip(w.tolist(), prior.log_prob(w).tolist(), strict=True):
        p = 0.8 * normal(x, 0, 0.01) + 0.05 * normal(x, -0.5, 0.04) + 0.15 * normal(x, 0.5, 0.09)
        assert got == pytest.approx(math.log(p), rel=1e-5)


@pytest.mark.parametrize("components", [1, 4, 7, 16])
def test_initial_means_are_evenly_spaced_and_avoid_zero(components: int) -> None:
    model = Net()
    sq.quantize_(model, SoftWeightSharing(components=components, init_range=0.8))
    means = mixture_of(model).means.detach()
    assert means.numel() == components
    assert bool((means != 0).all())
    assert float(means.abs().max()) == pytest.approx(0.8)
    assert torch.equal(means, means.sort().values)


def test_one_prior_shared_by_every_layer_and_trained_at_its_own_rates() -> None:
    model = Net()
    sq.quantize_(model, SoftWeightSharing(mean_lr_scale=0.2, variance_lr_scale=6.0))
    priors = {id(p.prior) for p in sq.train.trained_parametrizations(model).values()}
    assert len(priors) == 1
    prior = mixture_of(model)
    params = list(model.parameters())
    assert sum(p is prior.means for p in params) == 1  # once, not once per layer
    opt = sq.train.make_optimizer(sq.TrainConfig(lr=1e-3, weight_decay=1e-4), params)
    group = {id(p): g for g in opt.param_groups for p in g["params"]}
    assert group[id(prior.means)]["lr"] == pytest.approx(2e-4)
    assert group[id(prior.log_var)]["lr"] == pytest.approx(6e-3)
    assert group[id(prior.means)]["weight_decay"] == 0
    assert group[id(model.fc1.bias)]["weight_decay"] == 1e-4


def test_penalty_pulls_each_weight_to_its_nearest_component() -> None:
    layer = nn.Linear(3, 1)
    sq.quantize_(layer, SoftWeightSharing(components=2, init_range=0.3, hyper_prior=False))
    prior = mixture_of(layer)
    with torch.no_grad():
        prior.log_var.fill_(math.log(0.02**2))
        layer.parametrizations.weight.original.copy_(torch.tensor([[0.31, -0.32, -0.01]]))
    original = layer.parametrizations.weight.original
    model_penalty(layer).backward()
    grad = original.grad[0]
    assert grad[0] > 0 and grad[1] < 0 and grad[2] < 0  # descent: towards 0.3, -0.3 and 0


def test_eval_uses_snapped_weights_and_finish_stores_them_as_shared_values(tmp_path) -> None:
    torch.manual_seed(0)
    model = Net()
    sq.quantize_(model, SoftWeightSharing(components=8, pi_zero=0.3))
    model.eval()
    allowed = torch.cat([torch.zeros(1), mixture_of(model).means.detach()])
    for m in (model.conv, model.fc1, model.fc2):
        assert bool(torch.isin(m.weight, allowed).all())
    x = torch.randn(5, 1, 8, 8)
    before = model(x)
    path = tmp_path / "sws.sqz"
    sq.save(model, path)  # the coder snaps a copy
    report = finish_(model)
    assert set(report) == {"conv.weight", "fc1.weight", "fc2.weight"}
    assert all(r["clusters"] <= 8 for r in report.values())
    assert report["conv.weight"]["clusters"] >= 2  # fc1's small weights may all go to zero
    assert isinstance(model.conv.parametrizations.weight[0], SharedWeights)
    assert codebook_of(model.conv).numel() == report["conv.weight"]["clusters"]
    assert mixture_of(model) is None
    assert torch.equal(model(x), before)
    back = sq.load(path, Net())
    assert torch.equal(back(x), before)
    assert len(torch.unique(back.conv.weight)) <= 9


def test_training_moves_weights_onto_the_components() -> None:
    torch.manual_seed(0)
    model = Net()
    x = torch.randn(128, 1, 8, 8)
    y = model(x).argmax(1).detach()  # a task the initial model solves
    sq.quantize_(model, SoftWeightSharing(components=4, tau=1.0, hyper_prior=False))
    prior = mixture_of(model)

    def spread() -> float:
        w = model.fc1.parametrizations.weight.original.detach().flatten()
        centres = prior.all_means().detach()[prior.assign(w)]
        return float((w - centres).abs().mean())

    start = spread()
    cfg = sq.TrainConfig(epochs=30, optimizer="adam", lr=2e-3, weight_decay=0)
    history = sq.fit(model, [(x, y)], cfg, progress=False).history
    assert "penalty" in history[-1]
    assert spread() < 0.5 * start


def test_snapping_after_sparse_vd_keeps_the_pruned_zeros() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(30, 10)
    mask = torch.rand(10, 30) > 0.7
    sq.pruning.set_mask(layer, mask)
    sq.quantize_(layer, SoftWeightSharing(components=4))
    finish_(layer)
    assert bool((layer.weight[~mask] == 0).all())
    assert bool((layer.parametrizations.weight[0].indices[~mask] == 0).all())


def test_bad_input() -> None:
    with pytest.raises(ConfigError, match="components"):
        SoftWeightSharing(components=0)
    with pytest.raises(ConfigError, match="255"):
        SoftWeightSharing(components=300)
    with pytest.raises(ConfigError, match="tau"):
        SoftWeightSharing(tau=0)
    with pytest.raises(ConfigError, match="pi_zero"):
        SoftWeightSharing(pi_zero=1.0)
    with pytest.raises(ModelError, match="no layer"):
        sq.quantize_(nn.Sequential(nn.ReLU()), SoftWeightSharing())
    shared = nn.Linear(8, 8)
    sq.quantize_(shared, sq.quantization.KMeansSharing(fc_bits=2))
    with pytest.raises(ModelError, match="SharedWeights"):
        sq.quantize_(shared, SoftWeightSharing())


def test_soft_sharing_from_the_command_line(tmp_path, capsys, real_data) -> None:
    import json

    from squeezer.cli import main

    out = tmp_path / "l5.sqz"
    argv = [
        "quantize", "lenet5", "--method", "sws", "--components", "8", "--dataset", "mnist",
        "--data-dir", str(real_data / "mnist"), "--limit", "256", "--finetune-epochs", "1",
        "--quiet", "--out", str(out), "--json", "-",
    ]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out[captured.out.index("{") :])
    assert set(result["layers"]) == {"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"}
    assert all(v["clusters"] <= 8 for v in result["layers"].values())
    assert result["sqz_bytes"] == out.stat().st_size < result["float_sqz_bytes"] / 4
    back = sq.load(out)
    assert len(torch.unique(back.conv2.weight)) <= 9
    assert main(["quantize", "lenet5", "--method", "sws", "--dataset", "mnist"]) != 0
    err = capsys.readouterr().err
    assert "--finetune-epochs" in err and "Traceback" not in err


def test_recipe_stage_soft_share_snaps() -> None:
    from squeezer.pipeline import Recipe
    from squeezer.pipeline.run import run_stage

    recipe = Recipe.from_dict(
        {"name": "s", "stages": [{"soft-share": {"components": 4, "epochs": 1, "lr": 0.001}}]}
    )
    torch.manual_seed(0)
    model = Net()
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 4, (32,))
    report = run_stage(model, recipe.stages[0], recipe, [(x, y)], (x[:1],))
    assert report["method"] == "soft weight-sharing"
    assert set(report["layers"]) == {"conv", "fc1", "fc2"}
    for m in (model.conv, model.fc1, model.fc2):
        assert len(torch.unique(m.weight)) <= 5


def test_mixture_nll_gradients_match_autograd() -> None:
    from squeezer.quantization.soft_sharing import _MixtureNLL

    torch.manual_seed(0)
    w = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    means = torch.randn(4, dtype=torch.float64, requires_grad=True)
    log_var = torch.randn(4, dtype=torch.float64, requires_grad=True)
    log_mix = torch.log_softmax(torch.randn(4, dtype=torch.float64), 0).requires_grad_(True)
    assert torch.autograd.gradcheck(_MixtureNLL.apply, (w, means, log_var, log_mix))
    prior = GaussianMixturePrior(torch.tensor([-0.5, 0.5]), torch.tensor([-4.0, -3.0, -2.0]), 0.6)
    v = torch.randn(50)
    with torch.no_grad():
        assert float(prior.nll(v)) == pytest.approx(float(-prior.log_prob(v).sum()), rel=1e-5)


def test_tau_weighs_the_whole_log_prior_hyper_prior_included() -> None:
    model = Net()
    sq.quantize_(model, SoftWeightSharing(components=4, tau=0.01))
    prior = mixture_of(model)
    w = model.fc1.parametrizations.weight.original
    p = model.fc1.parametrizations.weight[0]
    expected = 0.01 * (prior.nll(w) + p.share * prior.hyper_penalty())
    assert float(p.penalty(w)) == pytest.approx(float(expected), rel=1e-6)
    assert float(prior.hyper_penalty()) != 0.0  # the hyper-prior is really in the sum
