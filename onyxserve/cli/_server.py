"""Reading a running server's HTTP reports (``drift-report``, ``shadow-report``): one GET, and
one way to say why it failed."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from onyxserve.errors import OnyxserveError


def get_json(address: str, timeout: float) -> Any:
    """The JSON document at ``address``; an ``OnyxserveError`` (exit 1) naming the address and the
    server's own message when it refuses, or why it cannot be reached."""
    try:
        with urllib.request.urlopen(address, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except (ValueError, AttributeError):
            pass
        raise OnyxserveError(f"{address}: HTTP {exc.code} {detail}".rstrip()) from None
    except (urllib.error.URLError, OSError) as exc:  # refused, unresolvable, timed out
        raise OnyxserveError(f"cannot reach {address}: {getattr(exc, 'reason', exc)}") from None
