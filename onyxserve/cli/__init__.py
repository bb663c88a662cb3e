"""The `onyxserve` command: one entry point, a subcommand per job.

Each subcommand lives next to the code it drives and exposes ``register(subparsers)``, which
adds its parser and sets ``func`` to a callable taking the parsed args and returning an exit
code. Imports are deferred to keep ``onyxserve --help`` fast and to let the serving image
skip scikit-learn.
"""

from __future__ import annotations

import argparse
import importlib
import sys

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onyxserve", description="Serve scikit-learn models as ONNX over V2 gRPC.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in SUBCOMMANDS:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
