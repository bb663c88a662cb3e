"""One error base class carrying its gRPC status; mapped to gRPC and HTTP in one place each.

Client errors (bad input, unknown model, queue full) are logged without a traceback; anything
else is INTERNAL with a generic message, and its traceback goes to the log only.
"""

from __future__ import annotations

import grpc


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


class InternalError(OnyxError):
    status = grpc.StatusCode.INTERNAL
    http_status = 500


# Every status a client can receive from us, for tests and for docs.
ALL_ERRORS: tuple[type[OnyxError], ...] = (
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    QueueFull,
    DeadlineExpired,
    ShuttingDown,
    RepositoryError,
    InternalError,
)
