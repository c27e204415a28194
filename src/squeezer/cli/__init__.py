"""The ``squeezer`` command line: a thin shell over the Python API.

Every error a user can cause prints one line, ``squeezer: error: ...``, and exits non-zero;
set ``SQUEEZER_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from squeezer import __version__

EXIT_ERROR = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that points at ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# The commands, in the order --help lists them; each module has add_parser(sub) and run(args).
COMMANDS = (
    "train",
    "evaluate",
    "measure",
    "demo",
    "compress",
    "run",
    "prune",
    "factorize",
    "convert",
    "quantize",
    "distill",
    "sensitivity",
    "search",
    "report",
    "export",
    "inspect",
    "models_cmd",
    "datasets",
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = _Parser(
        prog="squeezer",
        description="Make trained PyTorch networks smaller and faster, and measure by how "
        "much: size, speed (wall clock) and accuracy side by side.",
        epilog="Datasets are looked for in --data-dir, $SQUEEZER_DATA/<name>, "
        "~/.cache/squeezer/<name> and /usr/share/datasets/<name>, and downloaded "
        "when missing. Run 'squeezer COMMAND --help' for each command.",
    )
    parser.add_argument("--version", action="version", version=f"squeezer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"squeezer.cli.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    debug = bool(os.environ.get("SQUEEZER_DEBUG"))
    from squeezer.cli import common

    try:
        if getattr(args, "json", None) == "-":
            common.JSON_STREAM[0] = sys.stdout
            with contextlib.redirect_stdout(sys.stderr):
                return int(args.run(args) or 0)
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("squeezer: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        from squeezer.errors import SqueezerError

        kind = "" if isinstance(exc, SqueezerError | OSError) else f"{type(exc).__name__}: "
        message = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, OSError) and exc.filename and exc.strerror:
            message = f"{exc.filename}: {exc.strerror}"
        print(f"squeezer {args.command}: error: {kind}{message}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        common.JSON_STREAM[0] = None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
