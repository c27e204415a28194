"""Walking, matching and replacing submodules, and baking parametrizations in.

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
    """Whether layer ``name`` matches one of ``patterns``: the one pattern rule of squeezer.

    A pattern is a layer name or a shell-style pattern (``features.*``, ``layer?.0.conv1``,
    ``*.fc``), matched against the whole dotted name, case-sensitively.
    """
    return any(name == p or fnmatch.fnmatchcase(name, p) for p in patterns)


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


def is_type(module: nn.Module, type_names: Sequence[str]) -> bool:
    """Whether ``module`` is an instance of a class named in ``type_names`` (subclasses count,
    so a library's own ``Linear`` subclass is a ``"Linear"``)."""
    return any(c.__name__ in type_names for c in type(module).__mro__)


def weight_layers(
    model: nn.Module, layer_types: Sequence[str] = COMPRESSIBLE, exclude: Sequence[str] = ()
) -> Iterator[tuple[str, nn.Module]]:
    """``(name, module)`` for every layer of the given type names that has a weight."""
    for name, module in model.named_modules():
        chosen = is_type(module, layer_types) and not matches(name, exclude)
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
        bake_module_(module)
    return model


def bake_module_(module: nn.Module) -> nn.Module:
    """:func:`bake_` for one module's own tensors (its children are left as they are)."""
    if not parametrize.is_parametrized(module):
        return module
    with torch.no_grad():
        values = {n: getattr(module, n).detach().clone() for n in module.parametrizations}
    del module._modules["parametrizations"]
    module.__class__ = type(module).__bases__[0]
    for name, value in values.items():
        module.register_parameter(name, nn.Parameter(value))
    return module


def baked_copy(model: nn.Module) -> nn.Module:
    """A plain deep copy of ``model`` (``model`` itself keeps its parametrizations)."""
    return bake_(copy.deepcopy(model))


def remove_parametrization_(module: nn.Module, tensor: str) -> None:
    """Remove ``module.<tensor>``'s parametrizations, keeping the value they produce.

    ``parametrize.remove_parametrizations`` edits the generated class, which a parametrized
    module shares with its deep copies; giving this module a private copy of that class first
    leaves every copy working.
    """
    cls = type(module)
    module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
    parametrize.remove_parametrizations(module, tensor, leave_parametrized=True)


def plain_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """``model``'s state_dict as a plain model would have it: parametrizations (masks, shared
    weights) baked in on a copy, so the keys are ``weight``, not ``parametrizations...``."""
    if any(parametrize.is_parametrized(m) for m in model.modules()):
        model = baked_copy(model)
    return model.state_dict()
