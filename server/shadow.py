"""Shadow evaluation: the version holding the registry's ``shadow`` stage sees production's traffic
and is compared with it, but never answers.

Every request production answered (requests without an explicit version) is handed here once
its outputs exist. ``mirror`` does O(1) work on the request's path -- a counter check and a task
-- and cannot raise; the task yields once (so the primary's response is encoded and handed to
the transport first), then submits the already-decoded rows to the shadow version's own batcher
and compares the answers. A model has at most ``max_in_flight`` mirrored requests waiting; more
are dropped and counted, never queued, so a slow or stuck shadow costs memory that is bounded
and never a wait. Shadow failures (decode, its queue, its batch) are counted by kind, logged
once per kind, and never reach a client.

The rows are decoded once when both versions take the same features (names, order, kinds); a
shadow with other features decodes the request's original tensors against its own manifest, in
the task, and a decode failure is a shadow error of kind ``decode``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from onyxserve.core.normalizer import RowBlock
from onyxserve.server.errors import ModelNotFound, OnyxError, QueueFull
from onyxserve.server.repository import ModelRepository
from onyxserve.server.served_model import ServedModel
from onyxserve.server.shadow_compare import CompareError, Comparer
from onyxserve.server.shadow_stats import ShadowStats
from onyxserve.server.tensors import Tensor

log = logging.getLogger(__name__)

Outputs = dict[str, Any]


class _Pair:
    """One (model, production version, shadow version): how to feed and compare, and its stats."""

    def __init__(self, production: ServedModel, shadow: ServedModel) -> None:
        self.production_model, self.shadow_model = production, shadow
        self.stats = ShadowStats(production.name, production.version, shadow.version, production.manifest.task)
        p, s = production.decoder, shadow.decoder
        self.same_inputs = (p.names, p.kinds, p.categorical) == (s.names, s.kinds, s.categorical)
        try:
            self.comparer: Comparer | None = Comparer(production.manifest, shadow.manifest)
            self.compare_problem = ""
        except CompareError as exc:
            self.comparer, self.compare_problem = None, str(exc)


class ShadowMirror:
    def __init__(self, repository: ModelRepository, max_in_flight: int) -> None:
        self.repository = repository
        self.max_in_flight = max_in_flight
        self._pairs: dict[tuple[str, str, str], _Pair] = {}
        self._latest: dict[str, _Pair] = {}  # model -> pair last mirrored to
        self._in_flight: dict[str, int] = {}  # model -> mirrored requests not finished
        self._tasks: set[asyncio.Task] = set()  # held so none is garbage-collected mid-flight

    def target(self, name: str, production: ServedModel) -> ServedModel | None:
        """The version to mirror ``production``'s answers to (None: no shadow, or the same version)."""
        shadow = self.repository.stage_holder(name, "shadow")
        return shadow if shadow is not None and shadow is not production else None

    def mirror(
        self, production: ServedModel, shadow: ServedModel, block: RowBlock, tensors: Sequence[Tensor], outputs: Outputs
    ) -> None:
        """Called after production answered; never raises and never waits."""
        try:
            pair = self._pair(production, shadow)
            stats = pair.stats
            name = production.name
            if self._in_flight.get(name, 0) >= self.max_in_flight:
                stats.dropped(block.n_rows)
                return
            self._in_flight[name] = self._in_flight.get(name, 0) + 1
            stats.in_flight += 1
            stats.in_flight_gauge.inc()
            task = asyncio.get_running_loop().create_task(self._shadow(pair, block, tensors, outputs))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        except Exception:  # noqa: BLE001 - the shadow must never reach the client
            log.exception("model %s: mirroring to shadow version %s failed", production.name, shadow.version)

    def _pair(self, production: ServedModel, shadow: ServedModel) -> _Pair:
        key = (production.name, production.version, shadow.version)
        pair = self._pairs.get(key)
        if pair is None or pair.shadow_model is not shadow or pair.production_model is not production:
            # first time, or a version's files were reloaded: the stats carry on, the decoder is renewed
            fresh = _Pair(production, shadow)
            if pair is not None:
                fresh.stats = pair.stats
            pair = self._pairs[key] = fresh
        self._latest[production.name] = pair
        return pair

    async def _shadow(self, pair: _Pair, block: RowBlock, tensors: Sequence[Tensor], outputs: Outputs) -> None:
        stats, shadow = pair.stats, pair.shadow_model
        loop = asyncio.get_running_loop()
        rows = block.n_rows
        try:
            await asyncio.sleep(0)  # the primary's response goes out before any shadow work
            if pair.comparer is None:
                stats.errored(rows, "compare", pair.compare_problem)
                return
            if not pair.same_inputs:
                try:
                    block = shadow.decoder.decode(tensors)
                except OnyxError as exc:
                    stats.errored(rows, "decode", exc.message)
                    return
            started = loop.time()
            try:
                answer = await shadow.infer_block(block)
            except QueueFull:
                stats.dropped(rows)
                return
            except OnyxError as exc:
                stats.errored(rows, exc.status.name, exc.message)
                return
            seconds = loop.time() - started
            try:
                diffs = pair.comparer.compare(outputs, answer)
            except (CompareError, KeyError, IndexError, ValueError) as exc:
                stats.errored(rows, "compare", f"{type(exc).__name__}: {exc}")
                return
            stats.compared(diffs, seconds)
        except asyncio.CancelledError:
            stats.errored(rows, "cancelled", "server shutting down")
            raise
        except Exception as exc:  # noqa: BLE001 - counted, logged once per kind, never raised
            stats.errored(rows, "INTERNAL", f"{type(exc).__name__}: {exc}")
        finally:
            self._in_flight[pair.stats.model] -= 1
            stats.in_flight -= 1
            stats.in_flight_gauge.dec()

    def report(self, name: str) -> dict[str, Any]:
        """The comparison of ``name``'s current (else last) production/shadow pair."""
        production = self.repository.get(name)  # ModelNotFound / ModelNotReady name the problem
        shadow = self.target(name, production)
        if shadow is not None:
            return self._pair(production, shadow).stats.report(active=True)
        last = self._latest.get(name)
        if last is None:
            raise ModelNotFound(
                f"model '{name}' has no shadow version: promote one with "
                f"`onyxserve registry promote {name} VERSION --stage shadow`"
            )
        return last.stats.report(active=False)

    async def drain(self, timeout_s: float) -> None:
        """Shutdown: give mirrored requests ``timeout_s`` to finish, then cancel them."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in pending:
            task.cancel()
