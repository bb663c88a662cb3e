"""The one base class of every error onyxserve raises on purpose.

An ``OnyxserveError`` is a refusal whose message names what is wrong and where (the file, row,
column, feature, key, model or version), never a bug. Each side maps it in one place: the CLI
(``onyxserve.cli.main``) prints the message and exits with ``exit_code``; the server's subclasses
(``onyxserve.server.errors.OnyxError``) carry their gRPC status, mapped once per transport.
Anything else that escapes is a bug: the CLI lets its traceback show, the server answers INTERNAL.
"""

from __future__ import annotations


class OnyxserveError(Exception):
    """A refused operation; the message says what and where. Exit code 1 in the CLI."""

    exit_code = 1


class UsageError(OnyxserveError):
    """The command line itself is wrong (a flag's value, a malformed JSON argument). Exit code 2,
    as argparse uses for the errors it finds itself."""

    exit_code = 2
