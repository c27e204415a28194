"""The protocol every channel criterion follows, and the registry that lists them.

A criterion scores the removable channel classes of a traced model (higher = keep); the
planner (:func:`squeezer.surgery.plan_channels`) removes the lowest-scoring ones of each
coupled group; then the criterion may compensate for what was removed (ThiNet's and LASSO's
least-squares refit, neuron merging's folding of outgoing weights). A criterion that needs data
says so, and gets batches of ``(inputs, targets)``. Adding a criterion is one file with one
``@register_criterion`` class.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from torch import Tensor, nn

from squeezer.errors import ConfigError, UnknownNameError
from squeezer.surgery import ChannelClass, ChannelGraph, ChannelPlan

Groups = Mapping[frozenset[str], list[ChannelClass]]
Batches = Sequence[tuple[Tensor, Tensor]]

_CRITERIA: dict[str, type[Criterion]] = {}


class Criterion(ABC):
    """Base of channel criteria: override :meth:`score`, optionally :meth:`eligible` and
    :meth:`compensate`.

    Attributes:
        name: the registry name (``--criterion`` on the command line).
        needs_data: whether :meth:`score` reads batches.
        summary: one line for ``--help`` and listings, citing the paper.
        options: the :class:`~squeezer.pruning.ChannelPruning` fields its constructor takes.
    """

    name: ClassVar[str] = ""
    needs_data: ClassVar[bool] = False
    summary: ClassVar[str] = ""
    options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **options: Any) -> None:
        if options:
            raise ConfigError(f"criterion {self.name!r} takes no options {sorted(options)}")

    def eligible(self, model: nn.Module, classes: list[ChannelClass]) -> bool:
        """Whether this criterion can prune the coupled group ``classes`` (default: yes)."""
        return True

    def budget(self, ratios: Mapping[frozenset[str], float]) -> None:
        """Told, before :meth:`score`, the fraction of each group that will be removed
        (default: not needed)."""
        return None

    @abstractmethod
    def score(
        self, model: nn.Module, graph: ChannelGraph, groups: Groups, data: Batches | None
    ) -> dict[int, float]:
        """A score per class root (higher = keep); compared within a group."""

    def compensate(self, original: nn.Module, pruned: nn.Module, plan: ChannelPlan) -> None:
        """Adjust ``pruned`` for the removed channels (default: nothing)."""
        return None


def register_criterion(cls: type[Criterion]) -> type[Criterion]:
    """Class decorator: list ``cls`` under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _CRITERIA and _CRITERIA[cls.name] is not cls:
        raise ValueError(f"criterion {cls.name!r} is already registered")
    _CRITERIA[cls.name] = cls
    return cls


def list_criteria() -> list[str]:
    """The registered criterion names, in registration order."""
    return list(_CRITERIA)


def criterion_class(name: str) -> type[Criterion]:
    """The criterion registered as ``name``.

    Raises:
        UnknownNameError: no such criterion; the message lists the known ones.
    """
    if name not in _CRITERIA:
        close = difflib.get_close_matches(name, _CRITERIA, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise UnknownNameError(f"unknown criterion {name!r}{hint} (known: {', '.join(_CRITERIA)})")
    return _CRITERIA[name]


def make_criterion(name: str | Criterion, **options: Any) -> Criterion:
    """A fresh criterion object from a name (or the object itself)."""
    if isinstance(name, Criterion):
        return name
    return criterion_class(name)(**options)


def data_criteria() -> list[str]:
    """The names of the criteria that read data."""
    return [n for n, c in _CRITERIA.items() if c.needs_data]
