"""Checkpoints: a model's weights plus how to rebuild it, loaded without unpickling code.

A checkpoint is a ``torch.save`` file of plain data: the zoo name and constructor arguments
beside the ``state_dict``, and optionally the optimizer state, the epoch and the history so
training can resume. It is read with ``torch.load(weights_only=True)``: a forged file cannot
run code.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from squeezer.errors import CheckpointError

FORMAT = "squeezer.checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(
    model: nn.Module,
    path: str | Path,
    *,
    train_state: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (and optionally training state) to ``path`` atomically.

    The ``state_dict`` stored is the plain one (masks and shared weights baked in on a copy),
    so it loads into a fresh model; when ``train_state`` is given and the model is
    parametrized, the parametrized state is kept beside it for resuming.

    Args:
        model: any model; a zoo model's name and arguments, or a user model's class name,
            are recorded with the surgery squeezer did on it (see :mod:`squeezer.core.arch`).
        path: the file to write.
        train_state: what :func:`squeezer.fit` needs to resume (optimizer, epoch, history).
        meta: free-form plain data (dataset name, metrics...).

    Returns:
        The path written.
    """
    from squeezer import __version__
    from squeezer.core import describe, plain_state_dict

    path = Path(path)
    arch = describe(model)
    plain = plain_state_dict(model)
    if train_state is not None and plain.keys() != model.state_dict().keys():
        train_state = {**train_state, "model_state": model.state_dict()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "squeezer_version": __version__,
        "arch": arch,
        "input_shape": list(arch.get("input_shape") or ()),
        "state_dict": plain,
        "train_state": train_state,
        "meta": dict(meta or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint's raw content (plain data and tensors only).

    A bare ``state_dict`` saved with ``torch.save`` is returned wrapped as
    ``{"state_dict": ..., "arch": None}``.

    Raises:
        CheckpointError: the file is missing, not a PyTorch file, damaged, or would need to
            unpickle code.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        wanted = re.search(r"GLOBAL ([\w.]+)|Unsupported global: GLOBAL ([\w.]+)", text)
        if wanted:
            name = wanted.group(1) or wanted.group(2)
            raise CheckpointError(
                f"{path}: refused: the file asks to unpickle code or objects other than "
                f"tensors and plain data ({name})"
            ) from None
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        reason = detail.group(1).strip() if detail else text.strip().splitlines()[0][:200]
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (damaged or another format: {first[:200]})"
        ) from None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        if obj.get("format_version", 0) > FORMAT_VERSION:
            raise CheckpointError(
                f"{path}: written by a newer squeezer (format version "
                f"{obj['format_version']}); upgrade squeezer"
            )
        if not isinstance(obj.get("state_dict"), dict):
            raise CheckpointError(f"{path}: checkpoint has no state_dict")
        return obj
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {
            "format": None,
            "arch": None,
            "state_dict": obj,
            "train_state": None,
            "meta": {},
            "input_shape": [],
        }
    raise CheckpointError(f"{path}: not a squeezer checkpoint or a state_dict")


def load_checkpoint(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Load a checkpoint into ``model``, or rebuild the recorded zoo model.

    Args:
        path: a file written by :func:`save_checkpoint` (or a bare ``state_dict``).
        model: a fresh instance of the architecture to load into, needed for the user's own
            models (the recorded surgery is replayed on it); by default the zoo model the
            checkpoint records is built.

    Returns:
        The model with the checkpoint's weights, in eval mode.

    Raises:
        CheckpointError: unreadable file, unknown architecture, or weights that do not fit.
    """
    from squeezer.errors import SurgeryError
    from squeezer.models import rebuild

    ckpt = read_checkpoint(path)
    arch = ckpt.get("arch")
    if arch is None and model is None:
        raise CheckpointError(
            f"{path}: records no architecture; build the model and pass it as model="
        )
    if arch is not None:
        try:
            model = rebuild(arch, model)
        except SurgeryError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
    assert model is not None
    shape = ckpt.get("input_shape")
    if shape and not getattr(model, "input_shape", None):
        model.input_shape = tuple(shape)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = "; ".join(lines[1:4]) if len(lines) > 1 else lines[0] if lines else ""
        raise CheckpointError(f"{path}: weights do not fit the model: {detail}") from None
    return model.eval()
