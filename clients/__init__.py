"""Python clients and the load-test harness.

``InferenceClient`` (blocking) and ``AsyncInferenceClient`` (asyncio) share their method names;
``ClientOptions`` holds TLS, keepalive, message size, deadline and retry settings;
``OnyxClientError`` is the one exception they raise; ``InferResult`` decodes outputs to numpy.
Imported lazily, so the CLI's ``loadtest`` subcommand does not pull in grpc for nothing.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "InferenceClient": ".sync",
    "AsyncInferenceClient": ".aio",
    "ClientOptions": ".options",
    "OnyxClientError": ".errors",
    "InferResult": ".outputs",
    "ModelSchema": ".schema",
}
__all__ = [
    "AsyncInferenceClient",
    "ClientOptions",
    "InferResult",
    "InferenceClient",
    "ModelSchema",
    "OnyxClientError",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on first use
    from .aio import AsyncInferenceClient
    from .errors import OnyxClientError
    from .options import ClientOptions
    from .outputs import InferResult
    from .schema import ModelSchema
    from .sync import InferenceClient


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module, __name__), name)

