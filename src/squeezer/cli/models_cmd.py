"""``squeezer models``: list the zoo's models.

One module per command: its options (:func:`add_parser`) beside its body (:func:`run`).
"""

from __future__ import annotations

import argparse
from typing import Any

from squeezer.cli.common import (
    UsageError,
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "models", help="list the zoo's models", description="List registered model names."
    )
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'lenet*'")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from squeezer.models import list_models

    names = list_models(args.pattern)
    if not names:
        raise UsageError(f"no model matches {args.pattern!r}")
    print("\n".join(names))
    return 0
