"""The router without a server: weighted rendezvous hashing and the request parameters."""

from __future__ import annotations

import math
from collections import Counter
from types import SimpleNamespace

import pytest
from onyxserve.repository.variants import make_split, with_canary
from onyxserve.server.errors import InvalidInput
from onyxserve.server.models.variants import NO_ROUTING, Router, Routing, routing_from

KEYS = [f"key-{i}" for i in range(20_000)]


def router(*weights: float) -> Router:
    split = make_split([(None, v, w) for v, w in enumerate(weights, start=1)], primary=1)
    return Router([(x, SimpleNamespace(version=x.version)) for x in split])  # the router reads .version only


def chosen(r: Router, keys=KEYS) -> dict[str, str]:
    return {k: r.choose(k)[0].name for k in keys}


def test_keyed_and_random_shares_follow_the_weights_within_4_sigma():
    r = router(60, 30, 10)
    for counts, n in ((Counter(chosen(r).values()), len(KEYS)),
                      (Counter(r.choose(None)[0].name for _ in range(len(KEYS))), len(KEYS))):
        for name, p in (("v1", 0.6), ("v2", 0.3), ("v3", 0.1)):
            assert abs(counts[name] - n * p) <= 4 * math.sqrt(n * p * (1 - p)), (name, counts)


def test_a_canary_step_moves_keys_only_onto_the_canary():
    """The others keep their proportions in a step (``with_canary``), so their scores scale by
    one factor: no key moves between them, and none leaves the canary."""
    split = make_split([(None, 1, 60), (None, 2, 30), (None, 3, 10)], primary=1)
    before = chosen(Router([(x, SimpleNamespace(version=x.version)) for x in split]))
    stepped = with_canary(split, 3, 30)
    after = chosen(Router([(x, SimpleNamespace(version=x.version)) for x in stepped]))
    moved = [(before[k], after[k]) for k in KEYS if before[k] != after[k]]
    assert moved and all(new == "v3" for _, new in moved)
    # about the 20% it must move: from 10% of the keys on the canary to 30%
    assert abs(len(moved) - 0.2 * len(KEYS)) <= 4 * math.sqrt(len(KEYS) * 0.2 * 0.8)


def test_zero_weight_and_single_variants():
    r = router(1, 0)
    assert {r.choose(k)[0].name for k in KEYS[:500]} == {"v1"} and r.named("v2")[0].weight == 0.0
    assert router(5).choose(None)[0].name == "v1" and router(5).share(router(5).entries[0][0]) == 1.0


def test_routing_parameters():
    assert routing_from({}) is NO_ROUTING
    assert routing_from({"routing_key": 42}) == Routing("42") == routing_from({"routing_key": "42"})
    assert routing_from({"variant": "canary", "other": 1.5}) == Routing(None, "canary")
    for bad in ({"routing_key": 1.5}, {"routing_key": True}, {"routing_key": ["a"]}, {"variant": ""},
                {"variant": 3}):
        with pytest.raises(InvalidInput, match="routing_key|variant"):
            routing_from(bad)
