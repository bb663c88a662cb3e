"""Load-test harness speaking plain V2 gRPC (closed-loop sweeps, open-loop arrival rates).

The public API (``run_closed_loop``, ``run_sweep``, ``run_open_loop``, ``run_open_sweep``,
``prepare``, ``LoadResult``) is imported lazily, so registering the ``loadtest`` subcommand does
not pull in grpc and numpy.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LoadResult", "prepare", "run_closed_loop", "run_open_loop", "run_open_sweep", "run_sweep"]


def __getattr__(name: str) -> Any:
    if name == "LoadResult":
        from .stats import LoadResult

        return LoadResult
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(name)
