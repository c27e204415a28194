"""``squeezer report``: one self-contained HTML page from a folder of JSON results.

One module per command: its options (:func:`add_parser`) beside its body (:func:`run`).
"""

from __future__ import annotations

import argparse
from typing import Any

from squeezer.cli.common import UsageError, info


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="one HTML page (tables and plots) from the JSON files in a folder",
        description="Read every .json file in RUN_DIR (what the commands write with --json) "
        "and write one self-contained HTML page: sensitivity curves and tables, search "
        "trials with their Pareto front and the chosen per-layer settings, size and accuracy "
        "per recipe stage, and the numbers of any other result. Plots are embedded; the page "
        "needs no other file and no network.",
        epilog="Example: squeezer sensitivity m.pt --method channels --json run/sens.json; "
        "squeezer search m.pt --json run/search.json; squeezer report run",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the folder of .json results")
    p.add_argument("--out", metavar="HTML", help="where to write (default RUN_DIR/report.html)")
    p.add_argument("--title", help="the page's title (default: the folder's name)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from squeezer.report.html import ReportError, write_html

    try:
        path = write_html(args.run_dir, args.out, args.title)
    except ReportError as exc:
        raise UsageError(str(exc)) from None
    info(f"wrote {path}")
    return 0
