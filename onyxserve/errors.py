"""The one base class of every error onyxserve raises on purpose.

An ``OnyxserveError`` is a refusal whose message names what is wrong and where (the file, row,
column, feature, key, model or version), never a bug. The error bases of every part derive from
it (the training side's ``LifecycleError``, the repository's, the client's ``OnyxClientError``,
``ModelLoadError``), keeping their older bases (``ValueError``) too. The CLI maps it in one place
(``onyxserve.cli.run``): the message on one stderr line, exit code ``exit_code``. The server's
own errors (``onyxserve.server.errors.OnyxError``) carry their gRPC status, mapped once per
transport.
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


class Interrupted(OnyxserveError):
    """Stopped by Ctrl-C after keeping what was done (a load test's results so far). Exit code
    130, as for an interrupt anywhere else."""

    exit_code = 130
