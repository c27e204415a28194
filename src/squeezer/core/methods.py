"""One verb shape for every method: a config type, a registered handler, a report.

Each method is a frozen config (:class:`squeezer.config.Config`) plus one handler registered
for that config type under a verb::

    @register_handler("prune", Magnitude)
    def _magnitude(model, config, *, example_inputs=None, data=None) -> MagnitudeReport: ...

The public verbs (``sq.prune_``, ``sq.quantize_``, ``sq.factorize_``...) look the handler up
by the config's type, as torchao's ``quantize_(model, config)`` does, change the model in place
and return a :class:`Report`. Adding a method is one config, one handler and its tests.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from squeezer.errors import ConfigError

Handler = Callable[..., "Report"]

_HANDLERS: dict[str, dict[type, Handler]] = {}


class Report(ABC):
    """What every verb returns: a table for people (``format()``, ``str()``) and plain data
    for machines (``to_dict()``, ``to_json()``)."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready plain data."""

    @abstractmethod
    def format(self) -> str:
        """The report as a table a person can read."""

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def __str__(self) -> str:
        return self.format()


def register_handler(verb: str, config_type: type) -> Callable[[Handler], Handler]:
    """Decorator: make ``fn`` the handler of ``verb`` for configs of ``config_type``."""

    def wrap(fn: Handler) -> Handler:
        table = _HANDLERS.setdefault(verb, {})
        if config_type in table and table[config_type] is not fn:
            raise ValueError(f"{verb}: {config_type.__name__} already has a handler")
        table[config_type] = fn
        return fn

    return wrap


def handler_for(verb: str, config: Any) -> Handler:
    """The handler of ``verb`` for ``config`` (looked up along the config's class hierarchy).

    Raises:
        ConfigError: ``config`` is no method of this verb; the message lists those that are.
    """
    table = _HANDLERS.get(verb, {})
    for cls in type(config).__mro__:
        if cls in table:
            return table[cls]
    known = ", ".join(sorted(c.__name__ for c in table)) or "none registered"
    raise ConfigError(f"{verb}_: {type(config).__name__} is not a {verb} method (known: {known})")


def list_methods(verb: str | None = None) -> dict[str, list[type]]:
    """The config types registered per verb (or for one verb)."""
    verbs = [verb] if verb is not None else sorted(_HANDLERS)
    return {v: sorted(_HANDLERS.get(v, {}), key=lambda c: c.__name__) for v in verbs}


def apply(verb: str, model: Any, config: Any, *args: Any, **kwargs: Any) -> Report:
    """Run ``verb``'s handler for ``config`` on ``model``."""
    return handler_for(verb, config)(model, config, *args, **kwargs)


class PerLayerReport(Report, Mapping):
    """A report of one value (a number or a small dict) per layer, readable like a dict
    (``report["fc1"]``) as the verbs' results were before they had reports."""

    def __init__(self, method: str, layers: Mapping[str, Any], **totals: Any) -> None:
        self.method = method
        self.layers = dict(layers)
        self.totals = totals

    def __getitem__(self, name: str) -> Any:
        return self.layers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self.layers) == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **self.totals, "layers": self.layers}

    def format(self) -> str:
        lines = [self.method]
        width = max((len(n) for n in self.layers), default=5)
        for name, value in self.layers.items():
            if isinstance(value, Mapping):
                text = ", ".join(f"{k} {_num(v)}" for k, v in value.items())
            else:
                text = _num(value)
            lines.append(f"  {name:<{width}}  {text}")
        lines += [f"  {k}: {_num(v)}" for k, v in self.totals.items()]
        return "\n".join(lines)


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
