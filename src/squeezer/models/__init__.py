"""The model zoo: ``create(name, **kwargs)`` and ``list_models(pattern)``."""

from __future__ import annotations

from squeezer.models import lenet as _lenet  # noqa: F401  (registers the LeNets)
from squeezer.models.lenet import LeNet5, LeNet300
from squeezer.models.registry import (
    ARCH_ATTR,
    accepts,
    arch_of,
    create,
    list_models,
    model_fn,
    register_model,
)

__all__ = [
    "ARCH_ATTR",
    "LeNet5",
    "LeNet300",
    "accepts",
    "arch_of",
    "create",
    "list_models",
    "model_fn",
    "register_model",
]
