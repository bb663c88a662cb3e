"""Servers for the Python client tests: a unix-socket one, TLS and mutual-TLS ones (session
scoped, shared by the sync and async tests), and a restart helper for the retry tests."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.certs import Pki, make_pki
from tests.serving import ServerProcess, free_port

PLAIN = ["--model-control", "none"]


def start_logged(server: ServerProcess, timeout_s: float = 60.0) -> ServerProcess:
    """Start and wait for the "ready" log line (the helper's own probe speaks plaintext)."""
    server.start(wait_ready=False)
    deadline = time.monotonic() + timeout_s
    while "onyxserve ready" not in server.log():
        assert server.proc.poll() is None, server.log()
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    return server


def _serve(server: ServerProcess):
    try:
        yield server
    finally:
        assert server.stop() == 0, server.log()


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("client-pki"))


@pytest.fixture(scope="session")
def uds_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("uds") / "onyx.sock"


@pytest.fixture(scope="session")
def uds_server(model_repo, uds_path):
    """Serves gRPC on TCP and on the unix socket ``uds_path``."""
    root, _ = model_repo
    args = [*PLAIN, "--uds", str(uds_path)]
    server = ServerProcess(root, args=args, log_path=uds_path.parent / "server.log")
    yield from _serve(server.start())


@pytest.fixture(scope="session")
def tls_server(model_repo, pki):
    root, _ = model_repo
    args = [*PLAIN, "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    yield from _serve(start_logged(ServerProcess(root, args=args)))


@pytest.fixture(scope="session")
def mtls_server(model_repo, pki):
    root, _ = model_repo
    args = [*PLAIN, "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
            "--tls-client-ca", str(pki.ca)]
    yield from _serve(start_logged(ServerProcess(root, args=args)))


class Restart:
    """Stop ``old`` now; start a new server on the same gRPC port ``delay_s`` later, in a thread."""

    def __init__(self, old: ServerProcess, delay_s: float = 1.0) -> None:
        assert old.stop() == 0, old.log()
        self.new = ServerProcess(
            old.repository, args=old.args, grpc_port=old.grpc_port, http_port=free_port(),
            log_path=Path(str(old.log_path) + ".restarted"),
        )
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._start_later, args=(delay_s,), daemon=True)
        self._thread.start()

    def _start_later(self, delay_s: float) -> None:
        time.sleep(delay_s)
        try:
            self.new.start(timeout_s=30)
        except BaseException as exc:  # noqa: BLE001 - reported by close()
            self.error = exc

    def close(self) -> None:
        self._thread.join(40)
        try:
            assert self.error is None, self.error
        finally:
            assert self.new.stop() == 0, self.new.log()


@pytest.fixture
def own_server(model_repo, tmp_path):
    """A fresh plaintext server this test may stop (and restart with ``Restart``)."""
    root, _ = model_repo
    server = ServerProcess(root, args=PLAIN, log_path=tmp_path / "server.log").start()
    yield server
    server.stop()
