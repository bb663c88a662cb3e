"""The real server inside the test process: ``server/app.py``'s ``Server`` (the grpc.aio server
and the aiohttp app on one event loop, started and drained exactly as ``onyxserve serve`` does)
on 127.0.0.1 with ephemeral ports, its event loop in a background thread.

Next to ``tests/serving.py``'s subprocess it starts in a fraction of a second (no interpreter
or imports to pay for), so a test can have a server of its own; its log records reach pytest's
``caplog``; and ``request_stop`` begins the same drain SIGTERM does while the test keeps talking
to the server.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from onyxserve.server.app import BoundAddresses, Server
from onyxserve.server.dataplane import DataPlane
from onyxserve.server.settings import Settings

from onyxserve.cli.serve import run_event_loop

# what a test server differs in from `onyxserve serve`'s defaults: loopback, ports the kernel
# picks, the repository loaded once, and a short grace so that teardown is quick
TEST_SETTINGS: dict[str, Any] = {
    "host": "127.0.0.1", "grpc_port": 0, "http_port": 0, "model_control": "none", "shutdown_grace_s": 2.0,
}


class InProcessServer:
    def __init__(self, repository: Path, **settings: Any) -> None:
        self.repository = Path(repository)
        self.settings = Settings(**{**TEST_SETTINGS, "repository": self.repository, **settings})
        self.addresses: BoundAddresses | None = None
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None  # what start, serving or shutdown raised

    @property
    def grpc_target(self) -> str:
        return self.addresses.grpc

    @property
    def http_url(self) -> str:
        return f"http://{self.addresses.http}"

    @property
    def dataplane(self) -> DataPlane:
        return self._server.dataplane

    def start(self, timeout_s: float = 60.0) -> InProcessServer:
        # run_event_loop: uvloop when installed, as `onyxserve serve` runs
        self._thread = threading.Thread(target=run_event_loop, args=(self._main(),), name="onyxserve", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise TimeoutError(f"in-process server not started after {timeout_s}s")
        if self._error is not None:
            self._thread.join(timeout_s)
            raise RuntimeError(f"in-process server failed to start: {self._error!r}") from self._error
        return self

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        server = self._server = Server(self.settings)
        try:
            self.addresses = await server.start()
        except BaseException as exc:  # SystemExit when a port cannot be bound, too
            self._error = exc
        self._started.set()  # after self.addresses or self._error is set: start() reads them
        if self._error is None:
            try:
                await server.wait_stopped()
            except BaseException as exc:
                self._error = exc
        try:
            await server.shutdown()  # also after a failed start: whatever did start is closed
        except BaseException as exc:
            self._error = self._error or exc

    def request_stop(self) -> None:
        """Begin the drain (what SIGTERM does) without waiting for it; ``stop`` waits."""
        if self._loop is None or self._server is None:
            return
        try:
            self._loop.call_soon_threadsafe(self._server.request_stop)
        except RuntimeError:  # the loop already closed: stopped
            pass

    def stop(self, timeout_s: float = 60.0) -> None:
        """Drain and close; raises what the server raised while serving or shutting down."""
        if self._thread is None:
            return
        self.request_stop()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"in-process server still running {timeout_s}s after the stop")
        self._thread = None
        if self._error is not None:
            raise self._error

    def __enter__(self) -> InProcessServer:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
