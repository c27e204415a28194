"""The base of every squeezer configuration: frozen, validated, plain data.

A config turns into a dict (and JSON or YAML) and back. Unknown keys are rejected rather than
ignored, so a typo in a recipe file is an error and not a silently different experiment. YAML is
read with ``yaml.safe_load``: a config file can never run code.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from squeezer.errors import ConfigError

C = TypeVar("C", bound="Config")


@dataclasses.dataclass(frozen=True)
class Config:
    """Base class for squeezer's frozen configuration dataclasses.

    Subclasses declare fields with defaults and may check them in ``validate``; ``__post_init__``
    calls it, so an invalid config can never be constructed.
    """

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` if a field holds an invalid value."""

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a plain dict (tuples become lists, nested configs dicts)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            out[f.name] = _plain(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls: type[C], values: Mapping[str, Any]) -> C:
        """Build a config from a mapping, rejecting keys the config does not have."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"{cls.__name__}: expected a mapping, got {type(values).__name__}")
        names = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ConfigError(
                f"{cls.__name__}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"valid keys: {', '.join(sorted(names))}"
            )
        hints = typing.get_type_hints(cls)
        kwargs = {k: _coerce(hints.get(k), v, f"{cls.__name__}.{k}") for k, v in values.items()}
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"{cls.__name__}: {exc}") from None

    def replace(self: C, **changes: Any) -> C:
        """Return a copy with some fields changed (validated like a new config)."""
        return type(self).from_dict({**self.to_dict(), **changes})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{cls.__name__}: invalid JSON: {exc}") from None
        return cls.from_dict(values)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=True)

    @classmethod
    def from_yaml(cls: type[C], text_or_path: str | Path) -> C:
        """Read a config from YAML text or a ``.yaml``/``.yml`` file (``yaml.safe_load`` only)."""
        text = str(text_or_path)
        path = Path(text) if isinstance(text_or_path, Path) or "\n" not in text else None
        if path is not None and path.suffix in {".yaml", ".yml"}:
            try:
                text = path.read_text()
            except OSError as exc:
                raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{cls.__name__}: invalid YAML: {exc}") from None
        return cls.from_dict(values or {})


def _plain(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Turn plain data from JSON/YAML into the declared field type where it is unambiguous."""
    if hint is None:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        if len(args) == 1:
            return _coerce(args[0], value, where)
        return value
    if isinstance(hint, type) and issubclass(hint, Config) and isinstance(value, Mapping):
        return hint.from_dict(value)
    if origin is tuple and isinstance(value, list | tuple):
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def check(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)
