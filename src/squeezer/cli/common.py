"""Helpers shared by the commands: resolving models, reading shapes, writing JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from torch import nn

from squeezer.errors import SqueezerError


class UsageError(SqueezerError):
    """Bad command-line input that argparse itself cannot detect."""


def load_model(spec: str) -> tuple[nn.Module, dict[str, Any]]:
    """A model from a ``.sqz`` file, a checkpoint or, failing that, a zoo name (random weights).

    Returns:
        ``(model, info)`` where ``info`` has ``source`` ("sqz", "checkpoint" or "zoo"), ``meta`` and
        ``input_shape`` (possibly empty).
    """
    from squeezer.coding.sqz import is_sqz, load_with_header
    from squeezer.models import create, list_models
    from squeezer.train import load_checkpoint, read_checkpoint

    path = Path(spec)
    if path.is_file() and (is_sqz(path) or path.suffix == ".sqz"):
        model, header = load_with_header(path)
        shape = list(header.get("input_shape") or getattr(model, "input_shape", ()) or ())
        return model, {"source": "sqz", "meta": header.get("meta") or {}, "input_shape": shape}
    if path.exists():
        ckpt = read_checkpoint(path)
        model = load_checkpoint(path)
        shape = list(ckpt.get("input_shape") or getattr(model, "input_shape", ()) or ())
        return model, {"source": "checkpoint", "meta": ckpt.get("meta") or {}, "input_shape": shape}
    if spec in list_models():
        model = create(spec)
        return model, {
            "source": "zoo",
            "meta": {},
            "input_shape": list(getattr(model, "input_shape", ()) or ()),
        }
    if any(c in spec for c in "/\\."):
        raise UsageError(f"{spec}: no such file")
    raise UsageError(f"{spec}: neither a file nor a model name (see 'squeezer models')")


def parse_ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise UsageError(f"{what}: expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"{what}: expected positive integers, got {text!r}")
    return values


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` (``-`` for standard output); nothing if ``path`` is None."""
    if path is None:
        return
    text = json.dumps(payload, indent=2, default=_jsonable) + "\n"
    if path == "-":
        sys.stdout.write(text)
        return
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, tuple | set):
        return list(obj)
    return str(obj)


def check_fits(
    model: nn.Module, input_shape: tuple[int, ...], num_classes: int, dataset: str
) -> None:
    """Refuse to run a model on data of the wrong shape, with a readable message."""
    expected = tuple(getattr(model, "input_shape", ()) or ())
    if expected and tuple(expected) != tuple(input_shape):
        raise UsageError(
            f"the model expects inputs of shape {expected} but {dataset} has "
            f"images of shape {tuple(input_shape)}"
        )
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if last and last[-1].out_features != num_classes:
        raise UsageError(
            f"the model has {last[-1].out_features} outputs but {dataset} has {num_classes} classes"
        )


def info(message: str) -> None:
    """A line for the person at the terminal (standard error, so JSON on stdout stays clean)."""
    print(message, file=sys.stderr, flush=True)
