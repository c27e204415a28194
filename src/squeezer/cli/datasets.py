"""``squeezer datasets``: list datasets and where they are looked for.

One module per command: its options (:func:`add_parser`) beside its body (:func:`run`).
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "datasets",
        help="list datasets and where they are looked for",
        description="List dataset names and the folders searched for each.",
    )
    p.add_argument("--data-dir", metavar="DIR", help="folder to look in first")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from squeezer.data import list_datasets, search_dirs

    for name in list_datasets():
        where = (
            "bundled with scikit-learn"
            if name == "digits"
            else "searched in: " + ", ".join(str(d) for d in search_dirs(name, args.data_dir))
        )
        print(f"{name:14s} {where}")
    return 0
