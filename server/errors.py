"""One error base class carrying its gRPC status; mapped to gRPC and HTTP in one place each.

Client errors (bad input, unknown model, queue full) are logged without a traceback; anything
else is INTERNAL with a generic message, and its traceback goes to the log only.
"""

from __future__ import annotations

import logging

import grpc

# What a client is told about an error that is not an OnyxError: the details stay in the log.
INTERNAL_MESSAGE = "internal error; see the server log"


class OnyxError(Exception):
    """Base for errors a client may see; ``status`` is the gRPC code it is answered with."""

    status: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(OnyxError):
    status = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400


class ModelNotFound(OnyxError):
    status = grpc.StatusCode.NOT_FOUND
    http_status = 404


class VariantNotFound(ModelNotFound):
    """A request's ``variant`` parameter names no production variant of the model; the message
    lists the variants it has."""


class ModelNotReady(OnyxError):
    status = grpc.StatusCode.UNAVAILABLE
    http_status = 503


class QueueFull(OnyxError):
    status = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429


class DeadlineExpired(OnyxError):
    status = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504


class ShuttingDown(OnyxError):
    status = grpc.StatusCode.UNAVAILABLE
    http_status = 503


class RepositoryError(OnyxError):
    """A repository operation (load/unload) that cannot be done; says why."""

    status = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 400


class FeatureDisabled(OnyxError):
    """A feature switched off by a server setting; the message names the setting."""

    status = grpc.StatusCode.NOT_FOUND
    http_status = 404


class InternalError(OnyxError):
    """Anything unexpected, as a client sees it (``client_error``)."""

    status = grpc.StatusCode.INTERNAL
    http_status = 500


# Every status a client can receive from us, for tests and for docs.
ALL_ERRORS: tuple[type[OnyxError], ...] = (
    InvalidInput,
    ModelNotFound,
    VariantNotFound,
    ModelNotReady,
    QueueFull,
    DeadlineExpired,
    ShuttingDown,
    RepositoryError,
    FeatureDisabled,
    InternalError,
)


def client_error(exc: Exception, log: logging.Logger, where: str) -> OnyxError:
    """The error a client is answered with for ``exc``, logged once. An OnyxError is itself
    (one line, no traceback); anything else is InternalError with ``INTERNAL_MESSAGE`` and
    its traceback goes to the log only. Both transports map through this."""
    if isinstance(exc, OnyxError):
        log.info("%s: %s %s", where, exc.status.name, exc.message)
        return exc
    log.error("%s failed", where, exc_info=exc)
    return InternalError(INTERNAL_MESSAGE)
