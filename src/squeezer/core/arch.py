"""The architecture record: how to rebuild a model whose structure a method changed.

Every model squeezer changes carries a plain-data attribute, ``model.squeezer_arch``::

    {"name": "lenet5", "kwargs": {...},          # zoo models only: how to build the original
     "surgery": [{"module": "conv1", "type": "Replace", "spec": {...}}, ...]}

``surgery`` lists, in order, the modules that were replaced (by a smaller copy, a factorized
block, an identity...), each with the plain-data spec of its replacement
(:mod:`squeezer.core.spec`). Methods write it with :func:`record` and files replay it with
:func:`replay`, here and nowhere else. A model the user built (not from the zoo) has no
``name``: a file of it is loaded into a freshly built instance, on which :func:`replay` redoes
the recorded edits before the tensors are loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from squeezer.core.modules import resized, set_module
from squeezer.core.spec import build_module, module_spec
from squeezer.errors import SpecError, SurgeryError

ARCH_ATTR = "squeezer_arch"


def arch_of(model: nn.Module) -> dict[str, Any] | None:
    """The model's architecture record (a copy), or None if nothing was recorded."""
    arch = getattr(model, ARCH_ATTR, None)
    return dict(arch) if isinstance(arch, dict) else None


def zoo_name(model: nn.Module) -> str | None:
    """The zoo name the model was built from, or None for a model the user built."""
    arch = arch_of(model) or {}
    name = arch.get("name")
    return name if isinstance(name, str) else None


SIZES = (
    "in_channels",
    "out_channels",
    "groups",
    "in_features",
    "out_features",
    "num_features",
    "num_channels",
    "num_groups",
)


def replacement(name: str, module: nn.Module) -> dict[str, Any]:
    """The record saying that submodule ``name`` is now ``module`` (shapes, not weights).

    A module of a type specs describe is recorded whole; a resized module of another class
    (a subclass from the user's library) is recorded by its new sizes, and replaying resizes
    the fresh instance's own module of that class.
    """
    if isinstance(module, nn.Identity):
        return {"module": name, "type": "Identity"}
    try:
        return {"module": name, "type": "Replace", "spec": module_spec(module)}
    except SpecError:
        sizes = {
            k: int(getattr(module, k)) for k in SIZES if isinstance(getattr(module, k, None), int)
        }
        if sizes:
            return {
                "module": name, "type": "Resize", "class": type(module).__name__, "sizes": sizes
            }  # fmt: skip
        shapes = {
            k: list(t.shape)
            for k, t in [
                *module.named_parameters(recurse=False),
                *module.named_buffers(recurse=False),
            ]
        }
        if not shapes:
            raise
        return {"module": name, "type": "Tensors", "shapes": shapes}


def record(model: nn.Module, records: Sequence[Mapping[str, Any]]) -> None:
    """Append edits to ``model``'s architecture record (creating it when absent).

    A new record for module ``m`` supersedes earlier ones for ``m`` and for anything inside
    ``m``; records for modules inside an earlier replacement stay after it, so replaying the
    list in order always rebuilds the current structure.
    """
    if not records:
        return
    arch = arch_of(model) or {}
    kept = [dict(r) for r in arch.get("surgery", [])]
    for r in records:
        name = str(r["module"])
        if r.get("type") == "Attrs":  # attributes of a module whose children may be edited
            kept = [k for k in kept if not (k["module"] == name and k.get("type") == "Attrs")]
        else:
            kept = [
                k for k in kept if k["module"] != name and not k["module"].startswith(name + ".")
            ]
        kept.append(dict(r))
    setattr(model, ARCH_ATTR, {**arch, "surgery": kept})


def replace(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` in place of submodule ``name`` and record it."""
    set_module(model, name, module)
    record(model, [replacement(name, module)])


def replay(model: nn.Module, records: Sequence[Mapping[str, Any]]) -> nn.Module:
    """Redo recorded edits on a freshly built model (its weights are loaded after).

    Raises:
        SurgeryError: a record names a module the model lacks, or cannot be built.
    """
    if not isinstance(records, Sequence) or not all(isinstance(r, Mapping) for r in records):
        raise SurgeryError("recorded surgery must be a list of mappings")
    for r in records:
        name = str(r.get("module"))
        if r.get("type") == "Param":
            _param_to(model, name, r)
            continue
        if r.get("type") == "Attrs":
            _attrs_to(model, name, r)
            continue
        if r.get("type") == "Tensors":
            shapes = r.get("shapes")
            if not isinstance(shapes, Mapping):
                raise SurgeryError(f"recorded surgery for {name}: invalid shapes")
            for k, shape in shapes.items():
                _param_to(model, f"{name}.{k}" if name else str(k), {"shape": shape})
            continue
        old = _submodule(model, name)
        kind = r.get("type")
        if kind == "Identity":
            new: nn.Module = nn.Identity()
        elif kind == "Replace":
            try:
                new = build_module(r.get("spec"))  # type: ignore[arg-type]
            except SpecError as err:
                raise SurgeryError(f"recorded surgery for {name}: {err}") from None
        elif kind == "Resize":
            new = _resize_to(name, old, r)
        else:
            new = _legacy(name, kind, old, r)
        new.train(old.training)
        set_module(model, name, new)
    return model


def _submodule(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise SurgeryError(
            f"recorded surgery names module {name!r}, which this model does not have"
        ) from None


def _param_to(model: nn.Module, name: str, r: Mapping[str, Any]) -> None:
    """Parameter (or buffer) ``name`` reshaped as recorded (values are loaded after)."""
    owner_name, _, attr = name.rpartition(".")
    shape = r.get("shape")
    try:
        owner = model.get_submodule(owner_name)
    except AttributeError:
        owner = None
    t = getattr(owner, attr, None) if owner is not None else None
    if not isinstance(t, torch.Tensor):
        raise SurgeryError(f"recorded surgery names tensor {name!r}, which this model lacks")
    if not (
        isinstance(shape, list)
        and len(shape) == t.dim()
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
    ):
        raise SurgeryError(f"recorded surgery for {name}: invalid shape")
    value = t.detach().new_zeros(shape)
    if isinstance(t, nn.Parameter):
        setattr(owner, attr, nn.Parameter(value, requires_grad=t.requires_grad))
    else:
        owner._buffers[attr] = value
    if isinstance(owner, nn.LayerNorm) and attr in ("weight", "bias"):
        owner.normalized_shape = (shape[0],)
    if isinstance(owner, nn.Embedding) and attr == "weight":
        owner.embedding_dim = shape[1]


def _attrs_to(model: nn.Module, name: str, r: Mapping[str, Any]) -> None:
    """Integer attributes of module ``name`` set as recorded (a head count, a width)."""
    m = _submodule(model, name)
    values = r.get("values")
    if not isinstance(values, Mapping):
        raise SurgeryError(f"recorded surgery for {name}: invalid attributes")
    for k, v in values.items():
        if not isinstance(getattr(m, str(k), None), int) or not isinstance(v, int):
            raise SurgeryError(f"recorded surgery for {name}: {k} is not an integer attribute")
        setattr(m, str(k), v)


def _resize_to(name: str, old: nn.Module, r: Mapping[str, Any]) -> nn.Module:
    """``old`` resized to the recorded sizes (its values are loaded from the file after)."""
    sizes = r.get("sizes")
    if type(old).__name__ != r.get("class") or not isinstance(sizes, Mapping):
        raise SurgeryError(
            f"recorded surgery for {name}: resizes a {r.get('class')}, the model has a "
            f"{type(old).__name__}"
        )
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sizes.values()):
        raise SurgeryError(f"recorded surgery for {name}: invalid sizes")

    def first(key: str) -> torch.Tensor | None:
        return torch.arange(sizes[key]) if key in sizes else None

    if isinstance(old, nn.modules.batchnorm._BatchNorm):
        return resized(old, keep_features=first("num_features"))
    if isinstance(old, nn.GroupNorm):
        return resized(old, keep_features=first("num_channels"))
    if isinstance(old, nn.Conv2d) and old.groups == old.in_channels == old.out_channels > 1:
        return resized(old, keep_features=first("out_channels"))
    if isinstance(old, nn.Conv2d):
        return resized(old, first("in_channels"), first("out_channels"))
    return resized(old, first("in_features"), first("out_features"))


def _legacy(name: str, kind: Any, old: nn.Module, r: Mapping[str, Any]) -> nn.Module:
    """Shape records of channel pruning as files of squeezer 0.1 wrote them."""
    ints = [v for k, v in r.items() if k in ("in", "out", "groups", "features")]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in ints):
        raise SurgeryError(f"recorded surgery for {name}: invalid sizes")
    if kind == "Conv2d" and isinstance(old, nn.Conv2d):
        return nn.Conv2d(
            r["in"],
            r["out"],
            old.kernel_size,
            old.stride,
            old.padding,
            old.dilation,
            groups=r["groups"],
            bias=old.bias is not None,
            padding_mode=old.padding_mode,
        )
    if kind == "Linear" and isinstance(old, nn.Linear):
        return nn.Linear(r["in"], r["out"], bias=old.bias is not None)
    if kind in ("BatchNorm1d", "BatchNorm2d") and type(old).__name__ == kind:
        return type(old)(r["features"], old.eps, old.momentum, old.affine, old.track_running_stats)
    raise SurgeryError(f"recorded surgery for {name}: {kind} does not fit {type(old).__name__}")


def restore(model: nn.Module, arch: Mapping[str, Any]) -> nn.Module:
    """Replay ``arch``'s edits on ``model`` (freshly built) and attach the record to it."""
    if not isinstance(arch, Mapping):
        raise SurgeryError("the architecture record must be a mapping")
    replay(model, list(arch.get("surgery") or []))
    setattr(model, ARCH_ATTR, dict(arch))
    return model


def describe(model: nn.Module, input_shape: Sequence[int] | None = None) -> dict[str, Any]:
    """The architecture record to write into a file for ``model``.

    A zoo model's record says how to build it; any other model's names its class (used only in
    messages, never imported) so a reader knows what to build and pass as ``model=``.
    """
    arch = arch_of(model) or {}
    if not isinstance(arch.get("name"), str):
        cls = type(model)
        arch.setdefault("class", f"{cls.__module__}.{cls.__qualname__}")
    arch.setdefault("surgery", [])
    shape = input_shape or getattr(model, "input_shape", None)
    if shape:
        arch["input_shape"] = [int(v) for v in shape]
    return arch
