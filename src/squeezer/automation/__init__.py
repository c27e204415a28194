"""Automation (family A): deciding per-layer settings for the user.

- :func:`sensitivity`: each layer compressed alone at a range of settings (A2).
"""

from __future__ import annotations

from squeezer.automation.sensitivity import (
    SETTINGS,
    Point,
    SensitivityReport,
    default_setting,
    sensitivity,
    verb_of,
)

__all__ = [
    "SETTINGS",
    "Point",
    "SensitivityReport",
    "default_setting",
    "sensitivity",
    "verb_of",
]
