"""Mixed-precision bit allocation (HAQ-style): a BitSpace searched by AMC's agent and Optuna
under a file-size budget."""

from __future__ import annotations

import pytest
import torch

import searchkit
from squeezer.automation import AMCConfig, BitSpace, Budget, amc_search, search, uniform
from squeezer.coding import encode_model
from squeezer.errors import ConfigError

X = torch.zeros(1, 1, 8, 8)


@pytest.fixture(scope="module")
def setup():
    model, train, val = searchkit.trained()
    space = BitSpace(model, X, train[:2], min_bits=2, max_bits=8)
    _, evaluator = searchkit.space_and_evaluator(model, train, val)
    return model, space, evaluator


def test_bits_map_and_cost_prediction(setup) -> None:
    _, space, _ = setup
    assert space.names == ["0", "3", "6", "11"]
    assert space.setting("0", 0.0) == 8 and space.setting("0", 1.0) == 2
    assert space.setting("0", 0.5) == 5 and space.strength("0", 5) == pytest.approx(0.5)
    bits = {"0": 8, "3": 4, "6": 2, "11": 6}
    built = space.build(bits)
    actual = len(encode_model(built, "fixed"))
    predicted = space.cost(bits)
    assert predicted >= actual  # the overhead is estimated on the safe side
    assert predicted - actual < 0.05 * actual
    # each layer's weight and input quantizers have the bits asked for (the model's own
    # input, into the first layer, stays as it is)
    assert built[0].weight_quantizer.bits == 8 and built[0].input_quantizer is None
    for i, b in ((3, 4), (6, 2), (11, 6)):
        assert built[i].weight_quantizer.bits == b and built[i].input_quantizer.bits == b


def test_searches_meet_a_size_budget(setup) -> None:
    model, space, evaluator = setup
    budget = Budget("size", 6.0)  # 6x smaller than the float32 file
    reference = space.measure(model)
    for result in (
        amc_search(space, evaluator, budget, AMCConfig(episodes=4, warmup=2, seed=1)),
        search(model, space, evaluator, budget, trials=4, seed=0),
    ):
        assert result.trials and all(t.cost <= reference / 6.0 for t in result.trials)
        assert all(2 <= b <= 8 for t in result.trials for b in t.settings.values())
        assert result.best is not None
    u = uniform(space, budget, evaluator)
    assert len(set(u.settings.values())) == 1 and u.cost <= reference / 6.0


def test_bit_space_errors(setup) -> None:
    model, space, evaluator = setup
    with pytest.raises(ConfigError, match="every layer at 2 bits"):
        search(model, space, evaluator, Budget("size", 40.0), trials=1)
    with pytest.raises(ConfigError, match="must be size"):
        space.cost({}, "flops")
    with pytest.raises(ConfigError, match="min_bits"):
        BitSpace(model, X, [], min_bits=1)
