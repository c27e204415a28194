"""Walking, matching and replacing submodules, and baking parametrizations in.

Masks and shared weights are ``torch.nn.utils.parametrize`` parametrizations while a model
trains; :func:`bake_` removes them, leaving ordinary weights and a plain ``nn.Module``.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Iterator, Sequence

import numpy as np
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


def resized(
    old: nn.Module,
    keep_in: np.ndarray | Tensor | None = None,
    keep_out: np.ndarray | Tensor | None = None,
    keep_features: np.ndarray | Tensor | None = None,
) -> nn.Module:
    """A copy of conv, linear or BatchNorm ``old`` keeping only the given channels.

    The copy is ``old`` itself deep-copied, its tensors sliced and its size attributes set, so
    subclasses (a library's ``BatchNormAct2d`` or ``Conv2dSame``) keep their class and their
    own behaviour. A depthwise convolution keeps ``keep_features`` of its channels. Masks and
    shared weights are baked in (the copy is plain).
    """
    new = bake_module_(copy.deepcopy(old))

    def idx(keep: np.ndarray | Tensor) -> Tensor:
        if isinstance(keep, Tensor):
            return keep.long()
        return torch.from_numpy(np.flatnonzero(keep)).long()

    def take(name: str, dim: int, index: Tensor) -> None:
        t = getattr(new, name, None)
        if not isinstance(t, Tensor):
            return
        value = t.detach().index_select(dim, index).clone()
        if isinstance(t, nn.Parameter):
            setattr(new, name, nn.Parameter(value, requires_grad=t.requires_grad))
        else:
            new._buffers[name] = value

    with torch.no_grad():
        if isinstance(new, nn.LayerNorm) and keep_features is not None:
            i = idx(keep_features)
            take("weight", 0, i)
            take("bias", 0, i)
            new.normalized_shape = (len(i),)
            return new
        if isinstance(new, nn.GroupNorm):  # whole groups only (the channel graph couples them)
            i = idx(keep_features)
            size = new.num_channels // new.num_groups
            take("weight", 0, i)
            take("bias", 0, i)
            new.num_channels, new.num_groups = len(i), max(1, len(i) // size)
            return new
        if isinstance(new, nn.modules.batchnorm._BatchNorm) or (
            isinstance(new, nn.Conv2d) and keep_features is not None
        ):
            i = idx(keep_features)
            for name in ("weight", "bias", "running_mean", "running_var"):
                take(name, 0, i)
            if isinstance(new, nn.Conv2d):
                new.in_channels = new.out_channels = new.groups = len(i)
            else:
                new.num_features = len(i)
            return new
        conv = isinstance(new, (nn.Conv1d, nn.Conv2d))
        out_attr, in_attr = (
            ("out_channels", "in_channels") if conv else ("out_features", "in_features")
        )
        if conv and new.groups > 1:  # grouped: every group keeps the same width
            if keep_out is not None:
                o = idx(keep_out)
                take("weight", 0, o)
                take("bias", 0, o)
                new.out_channels = len(o)
            if keep_in is not None:
                i = idx(keep_in)
                width = len(i) // new.groups
                # the kept pattern repeats in every group: group 0's positions come first
                take("weight", 1, i[:width] % (new.in_channels // new.groups))
                new.in_channels = len(i)
            return new
        if keep_out is not None:
            o = idx(keep_out)
            take("weight", 0, o)
            take("bias", 0, o)
            setattr(new, out_attr, len(o))
        if keep_in is not None:
            i = idx(keep_in)
            take("weight", 1, i)
            setattr(new, in_attr, len(i))
    return new


def conv_patches(module: nn.Conv2d, x: Tensor) -> Tensor:
    """The input patches ``module`` multiplies its filters with: ``(groups, N * positions, d)``
    for input ``x``, where ``d`` is one filter's size (``in_channels / groups * kh * kw``, in
    the weight's order), so that the conv's output is ``patches @ weight.view(out, d).T``
    group by group (padding, stride and dilation as the conv does them)."""
    if module.padding_mode != "zeros":
        x = torch.nn.functional.pad(
            x, module._reversed_padding_repeated_twice, mode=module.padding_mode
        )
        padding: object = 0
    else:
        padding = module.padding
    if isinstance(padding, str):  # "same" / "valid"
        padding = (
            0
            if padding == "valid"
            else tuple((module.dilation[i] * (module.kernel_size[i] - 1)) // 2 for i in range(2))
        )
    cols = torch.nn.functional.unfold(
        x,
        module.kernel_size,
        module.dilation,
        padding,
        module.stride,  # type: ignore[arg-type]
    )
    n, _, positions = cols.shape
    g = module.groups
    d = cols.shape[1] // g
    return cols.view(n, g, d, positions).permute(1, 0, 3, 2).reshape(g, -1, d)
