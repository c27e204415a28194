"""The model zoo: ``create(name, **kwargs)`` and ``list_models(pattern)``."""

from __future__ import annotations

from squeezer.core.arch import ARCH_ATTR, arch_of

# Importing the modules registers their models.
from squeezer.models import allcnn, compact, densenet, inception, lenet, mobilenet, resnet, vgg
from squeezer.models.lenet import LeNet5, LeNet300
from squeezer.models.registry import (
    accepts,
    create,
    list_models,
    model_fn,
    rebuild,
    register_model,
)

__all__ = [
    "ARCH_ATTR",
    "LeNet5",
    "LeNet300",
    "accepts",
    "allcnn",
    "arch_of",
    "compact",
    "create",
    "densenet",
    "inception",
    "lenet",
    "list_models",
    "mobilenet",
    "model_fn",
    "rebuild",
    "register_model",
    "resnet",
    "vgg",
]
