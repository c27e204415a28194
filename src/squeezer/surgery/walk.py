"""Finding and walking the layers a method applies to, and baking parametrizations in.

Masks and shared weights are ``torch.nn.utils.parametrize`` parametrizations while a model
trains; :func:`bake_` removes them, leaving ordinary weights and a plain ``nn.Module``.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

COMPRESSIBLE = ("Linear", "Conv1d", "Conv2d", "Conv3d")


def matches(name: str, patterns: Sequence[str]) -> bool:
    """Whether ``name`` matches one of the shell-style ``patterns``."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule called ``name`` (dotted) by ``module``."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def type_name(module: nn.Module) -> str:
    """The class name of ``module``, seen through parametrization's generated subclass."""
    cls = type(module)
    if parametrize.is_parametrized(module):
        cls = cls.__bases__[0]
    return cls.__name__


def weight_layers(
    model: nn.Module, layer_types: Sequence[str] = COMPRESSIBLE, exclude: Sequence[str] = ()
) -> Iterator[tuple[str, nn.Module]]:
    """``(name, module)`` for every layer of the given type names that has a weight."""
    for name, module in model.named_modules():
        chosen = type_name(module) in layer_types and not matches(name, exclude)
        if chosen and isinstance(getattr(module, "weight", None), Tensor):
            yield name, module


def is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear)


def current_weight(module: nn.Module) -> Tensor:
    """The weight as the forward pass sees it (parametrizations applied), detached."""
    with torch.no_grad():
        return module.weight.detach().clone()


def find_parametrization(module: nn.Module, kind: type) -> nn.Module | None:
    """The first parametrization of ``module.weight`` that is an instance of ``kind``."""
    if not parametrize.is_parametrized(module, "weight"):
        return None
    return next((p for p in module.parametrizations.weight if isinstance(p, kind)), None)


def bake_(model: nn.Module) -> nn.Module:
    """Remove every parametrization, keeping the values it produced: a plain model again.

    Unlike ``parametrize.remove_parametrizations``, this never edits the generated class the
    parametrized module shares with its deep copies, so baking a copy leaves the original
    working (and the other way round).
    """
    for module in list(model.modules()):
        if parametrize.is_parametrized(module):
            with torch.no_grad():
                values = {n: getattr(module, n).detach().clone() for n in module.parametrizations}
            del module._modules["parametrizations"]
            module.__class__ = type(module).__bases__[0]
            for name, value in values.items():
                module.register_parameter(name, nn.Parameter(value))
    return model


def baked_copy(model: nn.Module) -> nn.Module:
    """A plain deep copy of ``model`` (``model`` itself keeps its parametrizations)."""
    return bake_(copy.deepcopy(model))
