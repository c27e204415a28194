"""The config base class: validation and dict/JSON/YAML round trips, unknown keys rejected."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from squeezer.config import Config, check
from squeezer.errors import ConfigError
from squeezer.train import TrainConfig


@dataclass(frozen=True)
class Inner(Config):
    bits: int = 5


@dataclass(frozen=True)
class Outer(Config):
    name: str = "x"
    sizes: tuple[int, ...] = (1, 2)
    rate: float = 0.5
    inner: Inner = Inner()
    limit: float | None = None

    def validate(self) -> None:
        check(0 <= self.rate <= 1, f"rate must be in [0, 1], got {self.rate}")


def test_round_trips() -> None:
    c = Outer(name="y", sizes=(3,), rate=1, inner=Inner(bits=8), limit=2.0)
    assert Outer.from_dict(c.to_dict()) == c
    assert Outer.from_json(c.to_json()) == c
    assert Outer.from_yaml(c.to_yaml()) == c
    assert c.to_dict()["inner"] == {"bits": 8} and c.to_dict()["sizes"] == [3]


def test_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("rate: 1\ninner:\n  bits: 3\n")
    c = Outer.from_yaml(path)
    assert c.rate == 1.0 and isinstance(c.rate, float) and c.inner == Inner(bits=3)


def test_unknown_keys_rejected() -> None:
    with pytest.raises(ConfigError, match=r"Outer: unknown key\(s\) 'rte'; valid keys"):
        Outer.from_dict({"rte": 0.1})
    with pytest.raises(ConfigError, match="Inner: unknown key"):
        Outer.from_dict({"inner": {"bit": 3}})


def test_validation_runs_on_every_construction() -> None:
    with pytest.raises(ConfigError, match="rate must be in"):
        Outer(rate=2)
    with pytest.raises(ConfigError, match="rate must be in"):
        Outer().replace(rate=-1)


def test_yaml_cannot_run_code() -> None:
    with pytest.raises(ConfigError, match="invalid YAML"):
        Outer.from_yaml("name: !!python/object/apply:os.system ['echo hi']\n")


def test_train_config_round_trip() -> None:
    c = TrainConfig(epochs=3, milestones=(1, 2), grad_clip=1.0)
    assert TrainConfig.from_dict(c.to_dict()) == c
