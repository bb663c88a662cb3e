from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.inprocess import InProcessServer


@pytest.fixture(scope="module")
def start_server() -> Iterator[Callable[..., InProcessServer]]:
    """``start_server(repository, **settings)``: the real server in this process (inprocess.py),
    started on ephemeral ports; each one is drained and closed when the module is done with it
    (``stop()`` earlier is fine). For a server inside one test, use ``InProcessServer`` in a
    ``with``."""
    started: list[InProcessServer] = []

    def start(repository: Path, **settings: Any) -> InProcessServer:
        server = InProcessServer(repository, **settings).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()
