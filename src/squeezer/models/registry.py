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

from squeezer.core.arch import ARCH_ATTR, restore
from squeezer.errors import SurgeryError, UnknownNameError

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


def rebuild(arch: dict[str, Any], model: nn.Module | None = None) -> nn.Module:
    """The model an architecture record describes, freshly initialized (weights come after).

    Args:
        arch: the record of a file or checkpoint (see :mod:`squeezer.core.arch`).
        model: a fresh instance of the user's own architecture; needed when the record names
            no zoo model, optional otherwise. Its recorded edits are replayed on it.

    Raises:
        SurgeryError: no zoo name and no ``model``, an unknown zoo model, or recorded edits
            that do not fit the model.
    """
    if not isinstance(arch, dict):
        raise SurgeryError("the architecture record must be a mapping")
    if model is None:
        name = arch.get("name")
        if not isinstance(name, str):
            built = arch.get("class") or "a model squeezer did not build"
            hint = arch.get("factory")
            how = f" (on the command line: --model {hint})" if hint else ""
            raise SurgeryError(
                f"holds a {built}, which squeezer cannot rebuild by itself: build a fresh "
                f"instance and pass it as model={how}"
            )
        kwargs = arch.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise SurgeryError("architecture arguments must be a mapping")
        try:
            model = create(name, **kwargs)
        except (UnknownNameError, TypeError, ValueError) as exc:
            raise SurgeryError(f"cannot rebuild the model: {exc}") from None
    return restore(model, arch)


def accepts(name: str, argument: str) -> bool:
    """Whether model ``name``'s builder takes ``argument``."""
    params = inspect.signature(model_fn(name)).parameters
    return argument in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
