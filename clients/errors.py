"""The client's one exception type: a gRPC status name plus the server's message, one line."""

from __future__ import annotations

import grpc

from onyxserve.errors import OnyxserveError


class OnyxClientError(OnyxserveError):
    """Any failure of a client call: the server's answer, a transport failure, or bad input
    caught before sending. ``code`` is the gRPC status (``status`` its name, e.g. ``"NOT_FOUND"``)
    and ``message`` the server's (or the client's) explanation; ``str()`` is ``"STATUS: message"``.
    """

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @property
    def status(self) -> str:
        return self.code.name


def invalid_input(message: str) -> OnyxClientError:
    """A request the client refuses to send (the server would answer INVALID_ARGUMENT too)."""
    return OnyxClientError(grpc.StatusCode.INVALID_ARGUMENT, message)


def from_rpc_error(error: grpc.RpcError, target: str, attempts: int, tls: bool = False) -> OnyxClientError:
    """Translate a grpc error; transport failures also name the target and the attempts made,
    and a likely TLS mismatch says which option to look at."""
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    code = code or grpc.StatusCode.UNKNOWN
    details = error.details() if callable(getattr(error, "details", None)) else str(error)
    message = details or code.name.lower()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        message = f"{message} (target {target}, {attempts} attempt{'s' if attempts != 1 else ''})"
        hint = _tls_hint(details or "", tls)
        if hint:
            message = f"{message}; {hint}"
    return OnyxClientError(code, message)


def _tls_hint(details: str, tls: bool) -> str:
    # gRPC reports a refused handshake only as a closed socket or a verify failure
    if "CERTIFICATE_VERIFY_FAILED" in details:
        return "the server's certificate is not signed by ClientOptions.tls_ca (or the system roots)"
    if "Socket closed" in details and not tls:
        return "if the server uses TLS, set ClientOptions(tls_ca=...)"
    if "Socket closed" in details and tls:
        return "if the server requires client certificates, set ClientOptions(tls_cert=..., tls_key=...)"
    return ""
