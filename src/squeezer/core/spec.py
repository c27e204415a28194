"""Plain-data descriptions of modules, so that a changed architecture can be rebuilt on load.

A *spec* is JSON-able: ``{"type": "Conv2d", "args": {...}}`` for a leaf, and
``{"type": "Sequential", "children": [...]}`` for a block. Only the types registered here can be
built, and their arguments are checked to be plain numbers, booleans, strings or lists of them,
so rebuilding from a file never runs code. Weights are not part of a spec; they are loaded after.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from squeezer.errors import SpecError

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_DESCRIBERS: dict[type, Callable[[nn.Module], dict[str, Any]]] = {}


def register_layer(cls: type[nn.Module]) -> type[nn.Module]:
    """Class decorator: make a layer type describable and buildable.

    The class must define ``spec_args(self) -> dict`` returning the keyword arguments of its
    constructor (plain data only).
    """
    _BUILDERS[cls.__name__] = cls
    _DESCRIBERS[cls] = lambda m: m.spec_args()  # type: ignore[attr-defined]
    return cls


_BLOCKS: dict[str, type[nn.Module]] = {}


def register_block(cls: type[nn.Module]) -> type[nn.Module]:
    """Class decorator: a container type (children plus ``spec_args()``) that specs describe
    and rebuild as ``cls(*children, **args)``."""
    _BLOCKS[cls.__name__] = cls
    return cls


def _conv_args(m: nn.Module) -> dict[str, Any]:
    assert isinstance(m, nn.Conv2d | nn.Conv1d)
    return {
        "in_channels": m.in_channels,
        "out_channels": m.out_channels,
        "kernel_size": list(m.kernel_size),
        "stride": list(m.stride),
        "padding": m.padding if isinstance(m.padding, str) else list(m.padding),
        "dilation": list(m.dilation),
        "groups": m.groups,
        "bias": m.bias is not None,
        "padding_mode": m.padding_mode,
    }


def _bn_args(m: nn.Module) -> dict[str, Any]:
    assert isinstance(m, nn.modules.batchnorm._BatchNorm)
    return {
        "num_features": m.num_features,
        "eps": m.eps,
        "momentum": m.momentum,
        "affine": m.affine,
        "track_running_stats": m.track_running_stats,
    }


for _cls, _describe in (
    (nn.Conv2d, _conv_args),
    (nn.Conv1d, _conv_args),
    (
        nn.Linear,
        lambda m: {
            "in_features": m.in_features,
            "out_features": m.out_features,
            "bias": m.bias is not None,
        },
    ),
    (nn.BatchNorm1d, _bn_args),
    (nn.BatchNorm2d, _bn_args),
    (nn.Identity, lambda m: {}),
    (nn.ReLU, lambda m: {"inplace": m.inplace}),
    (nn.Hardtanh, lambda m: {"min_val": m.min_val, "max_val": m.max_val}),
    (nn.Flatten, lambda m: {"start_dim": m.start_dim, "end_dim": m.end_dim}),
):
    _BUILDERS[_cls.__name__] = _cls
    _DESCRIBERS[_cls] = _describe


def module_spec(module: nn.Module) -> dict[str, Any]:
    """The spec of ``module``: its type, constructor arguments and (for blocks) children.

    Raises:
        SpecError: the module, or one of its children, is of an unregistered type.
    """
    cls = type(module)
    if cls is nn.Sequential:
        return {"type": "Sequential", "children": [module_spec(c) for c in module]}
    if cls in _BLOCKS.values():
        return {
            "type": cls.__name__,
            "args": module.spec_args(),  # type: ignore[operator]
            "children": [module_spec(c) for c in module.children()],
        }
    describe = _DESCRIBERS.get(cls)
    if describe is None:
        raise SpecError(
            f"cannot describe a {cls.__name__}: only {', '.join(sorted(_BUILDERS))} and "
            "Sequential blocks of them are recorded"
        )
    return {"type": cls.__name__, "args": describe(module)}


def _plain(value: object) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    return False


def build_module(spec: Mapping[str, Any]) -> nn.Module:
    """Build the (freshly initialized) module a spec describes.

    Raises:
        SpecError: unknown type, malformed spec or arguments the constructor rejects.
    """
    if not isinstance(spec, Mapping):
        raise SpecError(f"a module spec must be a mapping, got {type(spec).__name__}")
    kind = spec.get("type")
    children: list[nn.Module] = []
    if kind == "Sequential" or kind in _BLOCKS:
        listed = spec.get("children")
        if not isinstance(listed, list):
            raise SpecError(f"a {kind} spec needs a list of children")
        children = [build_module(c) for c in listed]
        if kind == "Sequential":
            return nn.Sequential(*children)
        builder: Callable[..., nn.Module] | None = _BLOCKS[str(kind)]
    else:
        builder = _BUILDERS.get(str(kind))
    if builder is None:
        raise SpecError(f"unknown module type {kind!r} in a recorded architecture")
    args = spec.get("args", {})
    if not isinstance(args, Mapping) or not all(
        isinstance(k, str) and _plain(v) for k, v in args.items()
    ):
        raise SpecError(f"invalid arguments for {kind} in a recorded architecture")
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}
    try:
        return builder(*children, **args)
    except (TypeError, ValueError, RuntimeError) as err:
        raise SpecError(f"cannot build {kind} from its recorded arguments: {err}") from None
