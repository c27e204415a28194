"""AMC's DDPG agent: every episode within the budget, repeatable, and it learns."""

from __future__ import annotations

import pytest
import torch

from squeezer.analysis import count_flops
from squeezer.automation import AMCConfig, Budget, amc_search
from squeezer.errors import ConfigError


def test_every_episode_meets_the_budget_and_runs_repeat(setup) -> None:
    model, space, evaluator = setup
    base = count_flops(model, (torch.zeros(1, 1, 8, 8),))[0]
    cfg = AMCConfig(episodes=6, warmup=3, seed=3)
    result = amc_search(space, evaluator, Budget("flops", 2.0), cfg)
    assert len(result.trials) == 6
    for t in result.trials:
        assert t.cost <= base / 2
        assert all(0 <= r <= space.max_ratio + 1e-12 for r in t.settings.values())
    assert result.best is not None and result.method == "amc-ddpg"
    again = amc_search(space, evaluator, Budget("flops", 2.0), cfg)
    assert [t.settings for t in again.trials] == [t.settings for t in result.trials]


def test_the_agent_learns_to_spare_the_group_that_matters(setup) -> None:
    _, space, _ = setup
    first = space.names[0]

    def score(model: torch.nn.Module) -> float:  # accuracy falls with the first conv's loss
        return model[0].out_channels / 16

    cfg = AMCConfig(episodes=60, warmup=10, sigma=0.3, decay=0.9, seed=0)
    result = amc_search(space, score, Budget("params", 1.5), cfg)
    early = [t.settings[first] for t in result.trials[:10]]
    late = [t.settings[first] for t in result.trials[-10:]]
    assert sum(late) / 10 < 0.5 * sum(early) / 10
    mean = [
        sum(t.accuracy for t in part) / 10 for part in (result.trials[:10], result.trials[-10:])
    ]
    assert mean[1] > mean[0]


def test_bad_budgets(setup) -> None:
    _, space, evaluator = setup
    with pytest.raises(ConfigError, match="closest reachable"):
        amc_search(space, evaluator, Budget("flops", 500.0), AMCConfig(episodes=1))
    with pytest.raises(ConfigError, match="latency"):
        amc_search(space, evaluator, Budget("latency", 2.0), AMCConfig(episodes=1))
    with pytest.raises(ConfigError, match="episodes"):
        AMCConfig(episodes=0)
