"""The model zoo's registry, in the manner of timm: ``register_model``, ``create``, ``list_models``.

Every model built by :func:`create` remembers how it was built (zoo name and constructor
arguments) in a plain attribute, ``squeezer_arch``, so a checkpoint or compressed file can
rebuild it without pickling code.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from squeezer.errors import UnknownNameError

ARCH_ATTR = "squeezer_arch"

ModelFn = Callable[..., nn.Module]
F = TypeVar("F", bound=ModelFn)

_REGISTRY: dict[str, ModelFn] = {}


def register_model(fn: F | None = None, *, name: str | None = None) -> Any:
    """Register a function that builds a model, under its own name or ``name``.

    Used as ``@register_model`` or ``@register_model(name="lenet5")``.
    """

    def wrap(f: F) -> F:
        key = name or f.__name__
        if key in _REGISTRY and _REGISTRY[key] is not f:
            raise ValueError(f"model {key!r} is already registered")
        _REGISTRY[key] = f
        return f

    return wrap(fn) if fn is not None else wrap


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (``"lenet*"``), sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def model_fn(name: str) -> ModelFn:
    """The builder registered as ``name``.

    Raises:
        UnknownNameError: no such model; the message suggests close names.
    """
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(f"unknown model {name!r}{hint} (known: {', '.join(list_models())})")
    return _REGISTRY[name]


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model with random initialization.

    Args:
        name: a name from :func:`list_models`.
        **kwargs: constructor arguments (every zoo model takes ``num_classes`` and
            ``in_channels``; the LeNets also take ``input_size``).

    Returns:
        The model, with ``model.squeezer_arch = {"name": ..., "kwargs": ...}`` recorded.

    Raises:
        UnknownNameError: the name is not registered.
        TypeError: an argument the model does not take.
    """
    fn = model_fn(name)
    params = inspect.signature(fn).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params and not takes_any]
    if unknown:
        raise TypeError(
            f"model {name!r} takes no argument(s) {', '.join(unknown)}; "
            f"it takes {', '.join(params)}"
        )
    model = fn(**kwargs)
    setattr(model, ARCH_ATTR, {"name": name, "kwargs": dict(kwargs)})
    return model


def arch_of(model: nn.Module) -> dict[str, Any] | None:
    """How ``model`` was built (``{"name", "kwargs"}``), or None if not by :func:`create`."""
    arch = getattr(model, ARCH_ATTR, None)
    return dict(arch) if isinstance(arch, dict) else None


def accepts(name: str, argument: str) -> bool:
    """Whether model ``name``'s builder takes ``argument``."""
    params = inspect.signature(model_fn(name)).parameters
    return argument in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
