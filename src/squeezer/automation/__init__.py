"""Automation (family A): deciding per-layer settings for the user.

- :func:`sensitivity`: each layer compressed alone at a range of settings (A2).
"""

from __future__ import annotations

from squeezer.automation.sensitivity import (
    DEFAULT_VALUES,
    SETTINGS,
    SHORTHANDS,
    Point,
    SensitivityReport,
    default_setting,
    method_config,
    sensitivity,
    verb_of,
)

__all__ = [
    "DEFAULT_VALUES",
    "SETTINGS",
    "SHORTHANDS",
    "Point",
    "SensitivityReport",
    "default_setting",
    "method_config",
    "sensitivity",
    "verb_of",
]
