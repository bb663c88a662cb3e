"""Connection options in one object, and how they become a gRPC channel's settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

PemSource = str | Path | bytes


@dataclass(frozen=True)
class ClientOptions:
    """How a client connects and retries. Every field has a working default for a plaintext
    server on loopback.

    TLS is used when ``tls`` is true or any ``tls_*`` field is set; ``tls_ca`` (a PEM path or
    bytes) is the CA that signed the server's certificate (None: the system roots), and
    ``tls_cert`` + ``tls_key`` are the client's certificate for mutual TLS.
    """

    tls: bool = False
    """Use TLS even without a CA or client certificate (verifying against the system roots)."""
    tls_ca: PemSource | None = None
    """PEM CA bundle (path or bytes) that verifies the server's certificate."""
    tls_cert: PemSource | None = None
    """PEM client certificate chain for mutual TLS (with ``tls_key``)."""
    tls_key: PemSource | None = None
    """PEM private key of ``tls_cert``."""
    server_name_override: str | None = None
    """Host name to verify the server's certificate against instead of the target's."""
    keepalive_time_s: float | None = None
    """Send an HTTP/2 keepalive ping after this long without activity (None: gRPC's default, off)."""
    keepalive_timeout_s: float | None = None
    """Close the connection when a keepalive ping is not answered within this long."""
    max_message_bytes: int = 16 * 1024 * 1024
    """Largest message sent or received (the server's default limit is the same 16 MiB)."""
    timeout_s: float | None = None
    """Default deadline of each call, retries included (None: no deadline); per-call ``timeout`` wins."""
    retries: int = 3
    """Further attempts after a call fails with UNAVAILABLE (never for any other status)."""
    backoff_initial_s: float = 0.1
    """First retry delay; it doubles each retry, with jitter, up to ``backoff_max_s``."""
    backoff_max_s: float = 2.0
    """Upper bound of one retry delay."""

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("ClientOptions: tls_cert and tls_key go together")
        if self.retries < 0 or self.backoff_initial_s < 0 or self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("ClientOptions: need retries >= 0 and 0 <= backoff_initial_s <= backoff_max_s")
        if self.max_message_bytes <= 0:
            raise ValueError("ClientOptions: max_message_bytes must be positive")

    @property
    def uses_tls(self) -> bool:
        return self.tls or any(v is not None for v in (self.tls_ca, self.tls_cert, self.tls_key))

    def credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials, or None for a plaintext channel."""
        if not self.uses_tls:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=_pem(self.tls_ca),
            private_key=_pem(self.tls_key),
            certificate_chain=_pem(self.tls_cert),
        )

    def channel_options(self) -> list[tuple[str, int | str]]:
        options: list[tuple[str, int | str]] = [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            # gRPC's own reconnect backoff (1 s, growing to 120 s) would make our retries fail
            # fast against a channel still waiting to reconnect; keep it on our schedule.
            ("grpc.initial_reconnect_backoff_ms", max(1, int(self.backoff_initial_s * 1000))),
            ("grpc.min_reconnect_backoff_ms", max(1, int(self.backoff_initial_s * 1000))),
            ("grpc.max_reconnect_backoff_ms", max(1, int(self.backoff_max_s * 1000))),
        ]
        if self.keepalive_time_s is not None:
            options.append(("grpc.keepalive_time_ms", int(self.keepalive_time_s * 1000)))
        if self.keepalive_timeout_s is not None:
            options.append(("grpc.keepalive_timeout_ms", int(self.keepalive_timeout_s * 1000)))
        if self.server_name_override:
            options.append(("grpc.ssl_target_name_override", self.server_name_override))
        return options


def _pem(source: PemSource | None) -> bytes | None:
    if source is None or isinstance(source, bytes):
        return source
    return Path(source).read_bytes()
