"""Importing the optional libraries of real architectures for the tests that use them.

timm imports torchvision, which has no CPU build for torch 2.13 on the machines this project
is tested on (the registry wheel links CUDA libraries and fails to import). Where no working
torchvision can be imported, :func:`import_timm` puts ``tests/stand_ins`` first on the path: an
import-compatible stand-in with the few names timm reads at import time, enough to build its
models (data transforms raise if used). A working torchvision is always preferred.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

STAND_INS = Path(__file__).resolve().parent / "stand_ins"


def import_timm() -> ModuleType:
    """``timm``, or a skip when it is not installed (``pip install -e ".[timm]"``)."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # not installed, or a build that does not load here
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.path.insert(0, str(STAND_INS))
    return pytest.importorskip("timm")
