"""The parts every ``onyxserve`` subcommand shares: its parser, its help layout, and the flags
that more than one command takes, each defined here once (one name, one meaning, one help text).

    --json              print the result as JSON on stdout (never a file)
    --json-out PATH     write the result as JSON to a file
    --html PATH         write a self-contained HTML report to a file
    --repository DIR    the model repository ($ONYXSERVE_REPOSITORY, else ./models, where optional)
    --registry-db FILE  the registry database (REPOSITORY/registry.db unless given)
    --url, --timeout    a running server's HTTP address, and how long to wait for it
    --chunk-rows, --no-progress, --s3-endpoint-url

Old spellings stay for one release (``deprecated_alias``, and ``--json PATH`` where ``--json``
used to take a file): hidden from ``--help``, they still work and print one line on stderr
naming the new flag.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from onyxserve.repository.store import registry_path

REPOSITORY_ENV = "ONYXSERVE_REPOSITORY"

# The help of each shared flag; tests check that every command shows exactly these.
HELP = {
    "--json": "print the result as JSON on stdout instead of text",
    "--json-out": "write the result as JSON to this file",
    "--html": "write a self-contained HTML report to this file",
    "--repository": f"model repository folder (default: ${REPOSITORY_ENV}, else ./models)",
    "--registry-db": f"registry database (default: {registry_path('REPOSITORY').as_posix()})",
    "--url": "the server's HTTP address",
    "--timeout": "seconds to wait for the server",
    "--chunk-rows": "rows read and processed at a time (bounds memory)",
    "--no-progress": "no progress bar",
    "--s3-endpoint-url": "S3 endpoint for s3:// locations (default: $ONYXSERVE_S3_ENDPOINT_URL, else boto3's)",
}
REQUIRED_REPOSITORY_HELP = "model repository folder"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every command's --help in one layout: a default is shown as ``(default: X)`` after the
    help, unless the help already explains it or there is nothing to say (no default, a switch,
    a required flag, a positional); descriptions and epilogs are wrapped paragraph by paragraph, and indented
    lines (examples) are kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        # a switch (store_true/false) has nothing to show; neither has "not given"
        silent = action.nargs == 0 or action.default in (None, "", [], argparse.SUPPRESS)
        if "(default" in text or silent or action.required or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks = textwrap.dedent(text).strip("\n").split("\n\n")
        return "\n\n".join(
            textwrap.indent(block, indent)
            if any(line.startswith(" ") for line in block.splitlines())
            else textwrap.fill(" ".join(block.split()), width, initial_indent=indent, subsequent_indent=indent)
            for block in blocks
        )


class CommandParser(argparse.ArgumentParser):
    """The parser class of ``onyxserve`` and (argparse passes it on) of every subcommand.

    Its one addition: a parser marked by ``add_json(..., deprecated_path=True)`` reads the old
    ``--json PATH`` (a following argument that looks like a file, or ``--json=PATH``) as
    ``--json-out PATH``, with a deprecation line. Done before argparse sees the arguments,
    since argparse cannot take a value for ``--json`` only sometimes.
    """

    json_path_deprecated = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self.json_path_deprecated and args is not None:
            args = _rewrite_json_path(self.prog, list(args))
        return super().parse_known_args(args, namespace)


def _looks_like_json_file(token: str) -> bool:
    # what the old --json PATH was given: out.json, results/run1.json; never a model name, a
    # host:port or unix:///socket target (those contain no '/' without a ':')
    if token.startswith("-"):
        return False
    return token.lower().endswith(".json") or ("/" in token and ":" not in token)


def _rewrite_json_path(prog: str, args: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            return out + args[i:]
        if token.startswith("--json="):
            warn_deprecated(prog, "--json PATH", "--json-out PATH")
            out.append("--json-out=" + token.removeprefix("--json="))
        elif token == "--json" and i + 1 < len(args) and _looks_like_json_file(args[i + 1]):
            warn_deprecated(prog, "--json PATH", "--json-out PATH")
            out += ["--json-out", args[i + 1]]
            i += 1
        else:
            out.append(token)
        i += 1
    return out


def warn_deprecated(prog: str, old: str, new: str) -> None:
    """The one line an old spelling prints on stderr (printed, not ``warnings.warn``: Python
    hides DeprecationWarning outside ``__main__``, and a user of the command must see it)."""
    print(f"{prog}: DeprecationWarning: {old} is deprecated, use {new} (the old spelling goes in the"
          " next release)", file=sys.stderr)


class _DeprecatedAlias(argparse.Action):
    """An old flag name: warns, then does exactly what ``new`` does with the value."""

    def __init__(self, option_strings: list[str], dest: str, new: argparse.Action, **kwargs: Any) -> None:
        super().__init__(
            option_strings, dest, nargs=new.nargs, const=new.const, type=new.type, choices=new.choices,
            metavar=new.metavar, default=argparse.SUPPRESS, help=argparse.SUPPRESS,
        )
        self.new = new

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        warn_deprecated(parser.prog, option_string or self.option_strings[0], self.new.option_strings[0])
        self.new(parser, namespace, values, option_string)


def deprecated_alias(parser: argparse.ArgumentParser, old: str, new: argparse.Action) -> None:
    """Keep ``old`` working for one release as a hidden spelling of the flag ``new``."""
    parser.add_argument(old, action=_DeprecatedAlias, dest=new.dest, new=new)


def add_command(subparsers: argparse._SubParsersAction, name: str, summary: str,
                details: str | None = None, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand's parser: ``summary`` (one line) is its entry in the parent's --help and the
    description of its own; ``details`` (paragraphs, indented examples) come after the flags."""
    return subparsers.add_parser(
        name, help=summary, description=summary, epilog=details, formatter_class=HelpFormatter, **kwargs
    )


def add_json(parser: argparse.ArgumentParser, *, deprecated_path: bool = False) -> argparse.Action:
    """``--json``: print JSON to stdout. ``deprecated_path``: the command's ``--json`` used to take a
    file, now ``--json-out`` (which this adds too)."""
    action = parser.add_argument("--json", action="store_true", help=HELP["--json"])
    if deprecated_path:
        if not isinstance(parser, CommandParser):
            raise TypeError("--json PATH can only be read by a CommandParser (build it with onyxserve.cli)")
        parser.json_path_deprecated = True
        add_json_out(parser)
    return action


def add_json_out(parser: argparse.ArgumentParser) -> argparse.Action:
    return parser.add_argument("--json-out", type=Path, metavar="PATH", help=HELP["--json-out"])


def add_html(parser: argparse.ArgumentParser) -> argparse.Action:
    return parser.add_argument("--html", type=Path, metavar="PATH", help=HELP["--html"])


def default_repository() -> Path:
    return Path(os.environ.get(REPOSITORY_ENV, "models"))


def add_repository(parser: argparse.ArgumentParser, required: bool = False, *,
                   resolved_by_settings: bool = False) -> argparse.Action:
    """``--repository``; optional: $ONYXSERVE_REPOSITORY, else ./models. ``resolved_by_settings``
    (serve): no argparse default, because the server's settings apply the same rule after the
    --config file, which a flag default would override."""
    if required:
        return parser.add_argument("--repository", type=Path, required=True, metavar="DIR",
                                   help=REQUIRED_REPOSITORY_HELP)
    default = None if resolved_by_settings else default_repository()
    return parser.add_argument("--repository", type=Path, default=default, metavar="DIR",
                               help=HELP["--repository"])


def add_registry_db(parser: argparse.ArgumentParser) -> argparse.Action:
    """``--registry-db``; None means ``registry_path(repository)``, which every reader and writer
    resolves the same way."""
    return parser.add_argument("--registry-db", type=Path, metavar="FILE", help=HELP["--registry-db"])


def add_server_url(parser: argparse.ArgumentParser, default: str = "http://127.0.0.1:8000") -> argparse.Action:
    return parser.add_argument("--url", default=default, help=HELP["--url"])


def add_server_timeout(parser: argparse.ArgumentParser, default: float) -> argparse.Action:
    return parser.add_argument("--timeout", type=float, default=default, metavar="SECONDS",
                               help=HELP["--timeout"])


def add_chunk_rows(parser: argparse.ArgumentParser, default: int = 65_536) -> argparse.Action:
    return parser.add_argument("--chunk-rows", type=int, default=default, metavar="N", help=HELP["--chunk-rows"])


def add_no_progress(parser: argparse.ArgumentParser) -> argparse.Action:
    return parser.add_argument("--no-progress", action="store_true", help=HELP["--no-progress"])


def add_s3_endpoint_url(parser: argparse.ArgumentParser) -> argparse.Action:
    return parser.add_argument("--s3-endpoint-url", metavar="URL", help=HELP["--s3-endpoint-url"])
