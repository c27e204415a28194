"""Automation (family A): deciding per-layer settings for the user.

- :func:`sensitivity`: each layer compressed alone at a range of settings (A2).
- :class:`ChannelSpace`, :class:`Budget`: per-group channel ratios and the cost they must meet.
- :func:`search`: Optuna (TPE, random, NSGA-II) over that space, trials in a shared storage.
- :func:`amc_search`: AMC's DDPG agent choosing each group's ratio in turn; over a
  :class:`BitSpace`, each layer's bits under a size budget (HAQ).
- :func:`morphnet`: FLOPs-weighted gamma shrinking, then one expansion factor to the budget.
- :func:`uniform`: the one-ratio baseline at the same budget.
"""

from __future__ import annotations

from squeezer.automation.amc import AMCConfig, amc_search
from squeezer.automation.morphnet import (
    FlopsGammaPenalty,
    MorphNetResult,
    channel_costs,
    expand,
    morphnet,
    shrink,
)
from squeezer.automation.search import SearchResult, TrialResult, search, uniform
from squeezer.automation.sensitivity import (
    DEFAULT_VALUES,
    SETTINGS,
    SHORTHANDS,
    Point,
    SensitivityReport,
    default_setting,
    method_config,
    sensitivity,
    verb_of,
)
from squeezer.automation.space import (
    BitSpace,
    Budget,
    ChannelSpace,
    Evaluator,
    measure_cost,
    scale_to_budget,
)

__all__ = [
    "DEFAULT_VALUES",
    "SETTINGS",
    "SHORTHANDS",
    "AMCConfig",
    "BitSpace",
    "Budget",
    "ChannelSpace",
    "Evaluator",
    "FlopsGammaPenalty",
    "MorphNetResult",
    "Point",
    "SearchResult",
    "SensitivityReport",
    "TrialResult",
    "amc_search",
    "channel_costs",
    "default_setting",
    "expand",
    "measure_cost",
    "method_config",
    "morphnet",
    "scale_to_budget",
    "search",
    "sensitivity",
    "shrink",
    "uniform",
    "verb_of",
]
