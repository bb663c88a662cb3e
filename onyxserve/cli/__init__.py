"""The `onyxserve` command: one entry point, a subcommand per job.

Each subcommand module exposes ``register(subparsers)``, which adds its parser (flags shared
between commands come from ``_options``) and sets ``func`` to a callable taking the parsed args
and returning an exit code. Imports are deferred to keep ``onyxserve --help`` fast and to let
the serving image skip scikit-learn.

Exit codes, decided here only (``run``): 0 done; an ``OnyxserveError``'s ``exit_code`` (1 a
refusal, 2 usage), its message on one stderr line, no traceback; 2 for what argparse refuses;
130 on Ctrl-C. Anything else that escapes is a bug, and its traceback shows.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from onyxserve.cli._options import CommandParser
from onyxserve.errors import OnyxserveError

# subcommand module -> imported only when its subcommand is registered
SUBCOMMANDS = (
    "onyxserve.cli.serve",  # serve
    "onyxserve.cli.export",  # export
    "onyxserve.cli.datasource",  # datasource
    "onyxserve.cli.train",  # train, tune
    "onyxserve.clients.loadtest.cli",  # loadtest
    "onyxserve.cli.evaluate", "onyxserve.cli.registry", "onyxserve.cli.batch_predict",
    "onyxserve.cli.drift_report",  # drift-report
    "onyxserve.cli.shadow_report",  # shadow-report
)


def new_parser() -> CommandParser:
    """The top-level parser, without subcommands (``loadtest`` alone uses it too)."""
    return CommandParser(prog="onyxserve", description="Serve scikit-learn models as ONNX over V2 gRPC.")


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser()
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in SUBCOMMANDS:
        importlib.import_module(module_name).register(sub)
    return parser


def one_line(message: str) -> str:
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; the one place errors become exit codes."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args.func(args) or 0)
    except OnyxserveError as exc:
        message = one_line(str(exc)) or type(exc).__name__
        print(f"{parser.prog} {args.command}: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
