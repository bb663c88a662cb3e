"""Routing a request without a version to one of a model's production variants.

A ``Router`` is one model's served split (``selection.served_split``: the registry's or
config.json's variants whose versions serve), immutable: the repository builds a new one when
the split or a loaded version changes and swaps it in one assignment, so a request routes
through either the old split or the new one, never half of each, and a version leaving the
split keeps serving the requests already routed to it (it is unloaded after its queue drains).

How a variant is chosen (probability weight / sum of weights, each way):

- a request naming a variant (request parameter ``variant``) goes to it;
- a request with a routing key (parameter ``routing_key``, a string or an integer) is sticky:
  weighted rendezvous hashing -- each variant scores ``-ln(u) / weight`` with ``u`` uniform from
  BLAKE2b(key, keyed by the variant's name), the lowest wins. The same key reaches the same
  variant in every process and worker, and a canary step (the other variants keeping their
  proportions, ``variants.with_canary``) moves keys onto the canary only: none between the
  others, none off it;
- any other request is random (``random.random``), by the cumulative weights.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from onyxserve.repository.variants import Variant
from onyxserve.server.errors import InvalidInput
from onyxserve.server.models.served import ServedModel

ROUTING_KEY = "routing_key"  # request parameter: sticky routing
VARIANT = "variant"  # request parameter: a variant by name; also the response parameter naming it
_SCALE = 2.0**-64


@dataclass(frozen=True, slots=True)
class Routing:
    """What a request says about its routing (its V2 parameters)."""

    key: str | None = None
    variant: str | None = None


NO_ROUTING = Routing()


def routing_from(parameters: Mapping[str, Any]) -> Routing:
    """The routing a request's parameters ask for (either transport's, as Python values);
    refuses a routing key that is not a string or an integer, or a variant that is not a name."""
    key = parameters.get(ROUTING_KEY)
    variant = parameters.get(VARIANT)
    if key is None and variant is None:
        return NO_ROUTING
    if key is not None:
        if isinstance(key, bool) or not isinstance(key, (str, int)):
            raise InvalidInput(f"parameter '{ROUTING_KEY}' must be a string or an integer, got {key!r}")
        key = str(key)  # 42 and "42" are one key
    if variant is not None and (not isinstance(variant, str) or not variant):
        raise InvalidInput(f"parameter '{VARIANT}' must be a variant's name (a string), got {variant!r}")
    return Routing(key, variant)


class Router:
    """One model's served production variants, each with the loaded version serving it."""

    __slots__ = ("entries", "_names", "_live", "_cumulative", "_total", "_hashers", "_inverse")

    def __init__(self, entries: Sequence[tuple[Variant, ServedModel]]) -> None:
        self.entries = tuple(entries)
        self._names = {v.name: (v, m) for v, m in self.entries}
        # zero-weight variants are reachable by name only
        self._live = [(v, m) for v, m in self.entries if v.weight > 0]
        self._cumulative = list(accumulate(v.weight for v, _ in self._live))
        self._total = self._cumulative[-1]
        self._hashers = [hashlib.blake2b(key=v.name.encode(), digest_size=8) for v, _ in self._live]
        self._inverse = [1.0 / v.weight for v, _ in self._live]

    def choose(self, key: str | None) -> tuple[Variant, ServedModel]:
        live = self._live
        if len(live) == 1:
            return live[0]
        if key is None:
            i = bisect.bisect_right(self._cumulative, random.random() * self._total)
            return live[min(i, len(live) - 1)]  # min: float rounding at the very top
        data = key.encode()
        best, best_score = 0, math.inf
        for i, hasher in enumerate(self._hashers):
            h = hasher.copy()
            h.update(data)
            u = (int.from_bytes(h.digest(), "big") + 0.5) * _SCALE  # in (0, 1)
            score = -math.log(u) * self._inverse[i]
            if score < best_score:
                best, best_score = i, score
        return live[best]

    def named(self, name: str) -> tuple[Variant, ServedModel] | None:
        return self._names.get(name)

    def share(self, variant: Variant) -> float:
        """The variant's share of requests without a version, 0..1."""
        return variant.weight / self._total

    def describe(self) -> str:
        return " ".join(f"{v.name}={m.version}:{100 * self.share(v):.4g}%" for v, m in self.entries)

    def same_as(self, other: Router | None) -> bool:
        return other is not None and len(other.entries) == len(self.entries) and all(
            a == b and ma is mb for (a, ma), (b, mb) in zip(self.entries, other.entries)
        )
