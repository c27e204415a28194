"""MorphNet-style shrink (FLOPs-weighted gamma L1) and expand (one factor to the budget)."""

from __future__ import annotations

import copy

import pytest
import torch

import searchkit
from squeezer.analysis import count_flops
from squeezer.automation import (
    Budget,
    ChannelSpace,
    FlopsGammaPenalty,
    channel_costs,
    expand,
    morphnet,
)
from squeezer.train import TrainState

X = torch.zeros(1, 1, 8, 8)


@pytest.fixture(scope="module")
def trained():
    return searchkit.trained()


def test_channel_cost_is_the_flops_one_channel_carries(trained) -> None:
    model = trained[0]
    space = ChannelSpace(model, X, criterion="bn_scale", max_ratio=0.9)
    costs = channel_costs(space)
    base = count_flops(model, (X,))[0]
    for g in space.names:
        one = space.build({g: 1 / space.channels[g]})  # exactly one channel less
        assert base - count_flops(one, (X,))[0] == pytest.approx(costs[g])
    # the middle conv's channels feed a 32-wide conv and come from a 16-wide one: dearest
    assert max(costs, key=costs.get) == space.names[1]


def test_penalty_adds_the_weighted_sign_to_gamma_gradients(trained) -> None:
    model = copy.deepcopy(trained[0])
    space = ChannelSpace(model, X, criterion="bn_scale", max_ratio=0.9)
    pen = FlopsGammaPenalty(space, strength=0.1)
    assert set(pen.coef) == {"1", "4", "7"}  # the three BatchNorms
    assert max(float(c.max()) for c in pen.coef.values()) == pytest.approx(1.0)
    for name in pen.coef:
        model.get_submodule(name).weight.grad = torch.zeros(model.get_submodule(name).weight.shape)
    pen.on_after_backward(TrainState(model=model, optimizer=None, config=None))
    for name, c in pen.coef.items():
        w = model.get_submodule(name).weight
        assert torch.allclose(w.grad, 0.1 * c * torch.sign(w.detach()))


def test_expand_spends_the_budget_with_one_factor(trained) -> None:
    model = trained[0]
    space = ChannelSpace(model, X, criterion="bn_scale", max_ratio=0.9)
    alive = {space.names[0]: 0.5, space.names[1]: 0.25, space.names[2]: 1.0}
    budget = Budget("flops", 3.0)
    w, ratios = expand(space, alive, budget)
    target = space.cost({}, "flops") / 3.0
    assert space.cost(ratios, "flops") <= target
    more = {g: max(0.0, 1 - min(1.0, (w * 1.02) * alive[g])) for g in space.names}
    assert space.cost(more, "flops") > target  # the factor is the largest that fits
    # proportions follow the live fractions where nothing is capped
    kept = {g: 1 - r for g, r in ratios.items()}
    assert kept[space.names[0]] == pytest.approx(2 * kept[space.names[1]], rel=1e-6)


def test_morphnet_end_to_end_meets_the_budget(trained) -> None:
    model, train, _ = trained
    seed = copy.deepcopy(model)
    pruned, result = morphnet(seed, X, train, Budget("flops", 2.0), strength=1.0, epochs=4,
                              lr=0.02, threshold=0.05)  # fmt: skip
    base = count_flops(model, (X,))[0]
    assert count_flops(pruned, (X,))[0] <= base / 2
    assert any(a < 1.0 for a in result.alive.values())  # the penalty killed channels
    assert result.factor > 0 and "expanded by" in result.format()
    # a penalty run ends with smaller weighted gammas than plain training would
    plain = copy.deepcopy(model)
    space = ChannelSpace(plain, X, criterion="bn_scale")
    pen = FlopsGammaPenalty(space, 1.0)
    assert pen.value(seed) < pen.value(model)
