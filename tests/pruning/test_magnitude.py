"""Magnitude pruning: thresholds, masks that hold through training, schedules, baking."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import squeezer as sq
from squeezer.errors import ConfigError
from squeezer.pruning import (
    GradualPruning,
    Magnitude,
    agp_sparsity,
    iterative_prune,
    prune_,
    scaled,
    sparsity_of,
)
from squeezer.surgery import bake_


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))


def test_per_layer_sparsity_removes_the_smallest() -> None:
    model = mlp()
    w0 = model[0].weight.detach().clone()
    report = prune_(model, Magnitude(per_layer={"0": 0.75}))
    assert report == {"0": pytest.approx(0.75)}
    kept = model[0].weight.detach() != 0
    assert int(kept.sum()) == 150
    assert w0.abs()[kept].min() >= w0.abs()[~kept].max()
    assert torch.count_nonzero(model[2].weight) == 150  # not named: untouched


def test_global_scope_uses_one_threshold() -> None:
    model = mlp()
    with torch.no_grad():
        model[2].weight.mul_(10)  # layer 2 has much larger weights
    prune_(model, Magnitude(sparsity=0.5, scope="global"))
    s = sparsity_of(model)
    total = (s["0"] * 600 + s["2"] * 150) / 750
    assert total == pytest.approx(0.5, abs=1 / 750)
    assert s["0"] > 0.55 and s["2"] < 0.3


def test_quality_threshold_is_std_multiple() -> None:
    model = mlp()
    w = model[0].weight.detach().clone()
    prune_(model, Magnitude(quality=0.5, layer_types=("Linear",)))
    expected = w.abs() > 0.5 * w.std()
    assert torch.equal(model[0].weight.detach() != 0, expected)


def test_masks_hold_through_momentum_and_weight_decay() -> None:
    model = mlp()
    prune_(model, Magnitude(sparsity=0.8))
    zeros = {
        n: m.weight.detach() == 0 for n, m in model.named_modules() if isinstance(m, nn.Linear)
    }
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    for _ in range(20):
        opt.zero_grad()
        loss = model(torch.randn(16, 20)).pow(2).mean()
        loss.backward()
        opt.step()
    for name, mask in zeros.items():
        module = model.get_submodule(name)
        assert torch.all(module.weight.detach()[mask] == 0)
        assert torch.any(module.weight.detach()[~mask] != 0)


def test_masks_hold_in_fit_and_pruning_is_cumulative() -> None:
    train, _ = sq.data.load("digits")
    model = sq.models.create("lenet300")
    prune_(model, Magnitude(sparsity=0.5))
    first = model.fc1.weight.detach() == 0
    sq.fit(model, train.subset(256), epochs=1, batch_size=32, momentum=0.9, weight_decay=5e-3)
    assert torch.all(model.fc1.weight.detach()[first] == 0)
    prune_(model, Magnitude(sparsity=0.8))
    assert torch.all(model.fc1.weight.detach()[first] == 0)
    assert sparsity_of(model)["fc1"] == pytest.approx(0.8)


def test_bake_leaves_a_plain_model_that_loads_into_the_zoo() -> None:
    model = sq.models.create("lenet5")
    prune_(model, Magnitude(sparsity=0.9))
    x = torch.randn(2, 1, 28, 28)
    y = model(x)
    bake_(model)
    assert type(model.fc1) is nn.Linear
    assert set(model.state_dict()) == set(sq.models.create("lenet5").state_dict())
    fresh = sq.models.create("lenet5")
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh(x), y)


def test_baked_copy_leaves_the_original_parametrized() -> None:
    model = mlp()
    prune_(model, Magnitude(sparsity=0.5))
    copy = sq.surgery.baked_copy(model)
    assert type(copy[0]) is nn.Linear
    assert torch.equal(model[0].weight, copy[0].weight)  # the original still works
    assert hasattr(model[0], "parametrizations")


def test_agp_schedule() -> None:
    assert agp_sparsity(0.0, 0.9, 0.0) == 0.0
    assert agp_sparsity(0.0, 0.9, 1.0) == pytest.approx(0.9)
    assert agp_sparsity(0.0, 0.9, 0.5) == pytest.approx(0.9 * (1 - 0.125))
    assert agp_sparsity(0.0, 0.9, 2.0) == pytest.approx(0.9)


def test_gradual_pruning_reaches_the_target_during_fit() -> None:
    train, _ = sq.data.load("digits")
    model = sq.models.create("lenet300")
    agp = GradualPruning(
        Magnitude(per_layer={"fc1": 0.9, "fc2": 0.6}), start_step=2, end_step=12, frequency=2
    )
    sq.fit(model, train.subset(320), epochs=2, batch_size=20, callbacks=[agp])
    s = sparsity_of(model)
    assert s["fc1"] == pytest.approx(0.9) and s["fc2"] == pytest.approx(0.6)
    assert s["fc3"] == 0


def test_iterative_prune_rounds() -> None:
    train, _ = sq.data.load("digits")
    model = sq.models.create("lenet300")
    rounds = iterative_prune(
        model,
        train.subset(128),
        Magnitude(sparsity=0.9),
        rounds=3,
        train_config=sq.TrainConfig(epochs=1, batch_size=32),
    )
    reached = [r["sparsity"]["fc1"] for r in rounds]
    kept = [1 - s for s in reached]
    assert reached[-1] == pytest.approx(0.9)
    assert kept[0] == pytest.approx(0.1 ** (1 / 3), abs=1e-3)  # geometric by default
    assert kept[1] == pytest.approx(0.1 ** (2 / 3), abs=1e-3)


def test_scaled_linear_and_geometric() -> None:
    c = Magnitude(per_layer={"a": 0.9})
    assert scaled(c, 0.5, "linear").per_layer["a"] == pytest.approx(0.45)
    assert scaled(c, 0.5).per_layer["a"] == pytest.approx(1 - 0.1**0.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give sparsity"),
        ({"sparsity": 1.0}, "must be in"),
        ({"quality": 1.0, "sparsity": 0.5}, "cannot be combined"),
        ({"scope": "global", "per_layer": {"a": 0.5}}, "scope='global'"),
    ],
)
def test_invalid(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Magnitude(**kwargs)
