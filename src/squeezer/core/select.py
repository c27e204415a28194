"""One way to say which layers a method touches, shared by every config.

Every method config derives from :class:`LayerSelection`:

- ``layers``: names or shell-style patterns of the layers to touch (empty: every layer the
  method can handle);
- ``exclude``: names or patterns left alone (wins over ``layers``);
- ``layer_types``: class names (subclasses count); empty means the method's own default;
- ``per_layer`` (on the configs that have a per-layer setting): a map from a name or pattern to
  that layer's value. An exact name wins; otherwise the first matching pattern, in order.

The pattern rule is :func:`squeezer.core.modules.matches` everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from torch import nn

from squeezer.config import Config, check
from squeezer.core.modules import COMPRESSIBLE, is_type, matches

T = TypeVar("T")


def override(per_layer: Mapping[str, T], name: str, default: T) -> T:
    """``name``'s value in ``per_layer``: its exact entry, else the first matching pattern,
    else ``default``."""
    if name in per_layer:
        return per_layer[name]
    for pattern, value in per_layer.items():
        if matches(name, [pattern]):
            return value
    return default


@dataclass(frozen=True)
class LayerSelection(Config):
    """Which layers a method applies to (see the module's documentation).

    Attributes:
        layers: names or patterns of the layers to touch; empty: every eligible layer.
        exclude: names or patterns of layers left alone.
        layer_types: class names of the layers touched; empty: the method's default types.
    """

    layers: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    layer_types: tuple[str, ...] = ()

    default_types: ClassVar[tuple[str, ...]] = COMPRESSIBLE

    def validate(self) -> None:
        for field in ("layers", "exclude", "layer_types"):
            value = getattr(self, field)
            check(
                isinstance(value, tuple) and all(isinstance(v, str) for v in value),
                f"{type(self).__name__}: {field} must be a list of strings",
            )

    @property
    def types(self) -> tuple[str, ...]:
        """The class names selected: ``layer_types``, or the method's default."""
        return self.layer_types or self.default_types

    def selects(self, name: str, module: nn.Module | None = None) -> bool:
        """Whether layer ``name`` (of class ``module``'s, if given) is selected."""
        if module is not None and not is_type(module, self.types):
            return False
        if self.layers and not matches(name, self.layers):
            return False
        return not matches(name, self.exclude)

    def select(self, model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
        """``(name, module)`` of every selected layer of ``model``, in module order."""
        for name, module in model.named_modules():
            if self.selects(name, module):
                yield name, module

    def value_for(self, name: str, default: Any) -> Any:
        """This layer's ``per_layer`` value (see :func:`override`), else ``default``."""
        return override(getattr(self, "per_layer", {}) or {}, name, default)
