"""Shadow evaluation: the version holding the registry's ``shadow`` stage sees production's traffic
and is compared with it, but never answers.

Every request production answered (requests without an explicit version, whichever production
variant answered it: each variant is its own comparison pair) is handed to
``mirror`` once its outputs exist. On the request's path that is O(1) and cannot raise: append
to the model's bounded shadow queue (full: dropped and counted, never waited for) and wake the
model's shadow worker. The worker runs later on the loop: it waits ``shadow_gather_ms`` (the
shadow's latency, never a client's), takes everything queued, joins the
rows into one block, submits it to the shadow version's own batcher (one submission, so a burst
costs one shadow batch, and a big one runs on the shadow's compute thread, off the loop) and
compares all of it with production's answers in one vectorized pass. Shadow failures (decode,
its queue, its batch) are counted by kind, logged once per kind, and never reach a client.

The rows are decoded once when both versions take the same features (names, order, kinds); a
shadow with other features decodes the request's original tensors against its own manifest, in
the worker, and a decode failure is a shadow error of kind ``decode``.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from onyxserve.core.normalizer import RowBlock
from onyxserve.server.errors import InvalidInput, ModelNotFound, OnyxError, QueueFull
from onyxserve.server.models.manager import ModelRepository
from onyxserve.server.models.served import ServedModel
from onyxserve.server.shadow.compare import CompareError, Comparer
from onyxserve.server.shadow.stats import ShadowStats
from onyxserve.server.tensors import Tensor

log = logging.getLogger(__name__)

Outputs = dict[str, Any]


class _Pair:
    """One (model, production version, shadow version): how to feed and compare, and its stats."""

    def __init__(self, production: ServedModel, shadow: ServedModel) -> None:
        # weak: an unloaded version's ORT session must not live on in a comparison's records
        self._production, self._shadow = weakref.ref(production), weakref.ref(shadow)
        self.stats = ShadowStats(production.name, production.version, shadow.version, production.manifest.task)
        p, s = production.decoder, shadow.decoder
        self.same_inputs = (p.names, p.kinds, p.categorical) == (s.names, s.kinds, s.categorical)
        try:
            self.comparer: Comparer | None = Comparer(production.manifest, shadow.manifest)
            self.compare_problem = ""
        except CompareError as exc:
            self.comparer, self.compare_problem = None, str(exc)

    def serves(self, production: ServedModel, shadow: ServedModel) -> bool:
        return self._production() is production and self._shadow() is shadow


@dataclass(slots=True)
class _Mirrored:
    pair: _Pair
    shadow: ServedModel  # held while queued: it may be unloaded meanwhile (then the batcher says so)
    block: RowBlock  # production's decoded rows
    tensors: Sequence[Tensor]  # the original request, for a shadow with other features
    outputs: Outputs  # production's answer (every output)
    queued: float  # loop time


class _Lane:
    """One model's shadow queue and the worker draining it."""

    def __init__(self) -> None:
        self.queue: deque[_Mirrored] = deque()
        self.running = 0  # mirrored requests taken by the worker and not finished
        self.wakeup = asyncio.Event()
        self.worker: asyncio.Task | None = None


class ShadowMirror:
    def __init__(self, repository: ModelRepository, max_in_flight: int, gather_s: float = 0.002) -> None:
        self.repository = repository
        self.max_in_flight = max_in_flight
        self.gather_s = gather_s
        self._pairs: dict[tuple[str, str, str], _Pair] = {}
        self._latest: dict[str, _Pair] = {}  # model -> pair last mirrored to
        self._lanes: dict[str, _Lane] = {}

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
            lane = self._lanes.get(production.name)
            if lane is None:
                lane = self._lanes[production.name] = _Lane()
            if lane.worker is None or lane.worker.done():
                lane.worker = asyncio.get_running_loop().create_task(
                    self._work(lane), name=f"shadow-{production.name}"
                )
            if len(lane.queue) + lane.running >= self.max_in_flight:
                pair.stats.dropped(block.n_rows)
                return
            lane.queue.append(_Mirrored(pair, shadow, block, tensors, outputs, lane.worker.get_loop().time()))
            pair.stats.in_flight += 1
            pair.stats.in_flight_gauge.inc()
            lane.wakeup.set()
        except Exception:  # the shadow must never reach the client
            log.exception("model %s: mirroring to shadow version %s failed", production.name, shadow.version)

    def _pair(self, production: ServedModel, shadow: ServedModel) -> _Pair:
        key = (production.name, production.version, shadow.version)
        pair = self._pairs.get(key)
        if pair is None or not pair.serves(production, shadow):
            # first time, or a version's files were reloaded: the stats carry on, the decoder is renewed
            fresh = _Pair(production, shadow)
            if pair is not None:
                fresh.stats = pair.stats
            pair = self._pairs[key] = fresh
        self._latest[production.name] = pair
        return pair

    async def _work(self, lane: _Lane) -> None:
        """Drain the lane for ever: everything queued at once, one group per comparison pair."""
        while True:
            await lane.wakeup.wait()
            # the primaries' responses go out before any shadow work; and one shadow batch per
            # gather window, since each drain costs a batch (~60 us of CPU) however few rows
            await asyncio.sleep(self.gather_s if len(lane.queue) < self.max_in_flight else 0)
            lane.wakeup.clear()
            items = list(lane.queue)
            lane.queue.clear()
            lane.running = len(items)
            groups: dict[int, list[_Mirrored]] = {}
            for item in items:
                groups.setdefault(id(item.pair), []).append(item)
            try:
                await asyncio.gather(*(self._shadow(g[0].pair, g) for g in groups.values()))
            finally:
                for item in items:
                    item.pair.stats.in_flight -= 1
                    item.pair.stats.in_flight_gauge.dec()
                lane.running = 0

    async def _shadow(self, pair: _Pair, items: list[_Mirrored]) -> None:
        """One pair's share of a drain: decode if needed, one shadow submission, one comparison."""
        stats = pair.stats
        try:
            if pair.comparer is None:
                for item in items:
                    stats.errored(item.block.n_rows, "compare", pair.compare_problem)
                return
            blocks = []
            for item in items:
                if pair.same_inputs:
                    blocks.append(item.block)
                    continue
                try:
                    blocks.append(item.shadow.decoder.decode(item.tensors))
                except OnyxError as exc:
                    stats.errored(item.block.n_rows, "decode", exc.message)
                    blocks.append(None)
            items = [item for item, b in zip(items, blocks) if b is not None]
            blocks = [b for b in blocks if b is not None]
            if not items:
                return
            answers = await self._run_shadow(pair, items, blocks)
            if answers is None:
                return
            loop = asyncio.get_running_loop()
            done = loop.time()
            production = {k: np.concatenate([item.outputs[k] for item in items]) for k in answers}
            try:
                diffs = pair.comparer.compare(production, answers)
            except (CompareError, KeyError, IndexError, ValueError) as exc:
                for item in items:
                    stats.errored(item.block.n_rows, "compare", f"{type(exc).__name__}: {exc}")
                return
            stats.compared(diffs, np.array([done - item.queued for item in items]))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - counted, logged once per kind, never raised
            for item in items:
                stats.errored(item.block.n_rows, "INTERNAL", f"{type(exc).__name__}: {exc}")

    async def _run_shadow(self, pair: _Pair, items: list[_Mirrored], blocks: list[RowBlock]) -> Outputs | None:
        """The shadow's outputs for all ``blocks`` in order: one joined submission; when the shadow
        refuses a value in it, each request alone, so only the offending ones count as errors."""
        shadow, stats = items[0].shadow, pair.stats
        joined = join_blocks(blocks)
        try:
            if joined is not None:
                return await shadow.infer_block(joined)
        except QueueFull:
            for item in items:
                stats.dropped(item.block.n_rows)
            return None
        except InvalidInput:
            pass  # find the requests it came from, below
        except OnyxError as exc:
            for item in items:
                stats.errored(item.block.n_rows, exc.status.name, exc.message)
            return None
        answered, outputs = [], []
        results = await asyncio.gather(*(shadow.infer_block(b) for b in blocks), return_exceptions=True)
        for item, result in zip(items, results):
            if isinstance(result, QueueFull):
                stats.dropped(item.block.n_rows)
            elif isinstance(result, OnyxError):
                stats.errored(item.block.n_rows, result.status.name, result.message)
            elif isinstance(result, BaseException):
                raise result
            else:
                outputs.append(result)
                answered.append(item)
        items[:] = answered  # the caller compares only what the shadow answered
        if not outputs:
            return None
        return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}

    def report(self, name: str) -> dict[str, Any]:
        """The comparison of ``name``'s current (else last) production/shadow pair."""
        production = self.repository.get(name)  # ModelNotFound / ModelNotReady name the problem
        shadow = self.target(name, production)
        if shadow is not None:
            out = self._pair(production, shadow).stats.report(active=True)
            # production variants beside the production version: each compared with the shadow too
            others = {
                version: pair.stats.report(active=True)
                for version in self.repository.routed_versions(name)
                if version != production.version
                and (pair := self._pairs.get((name, version, shadow.version))) is not None
            }
            if others:
                out["other_variants"] = others
            return out
        last = self._latest.get(name)
        if last is None:
            raise ModelNotFound(
                f"model '{name}' has no shadow version: promote one with "
                f"`onyxserve registry promote {name} VERSION --stage shadow`"
            )
        return last.stats.report(active=False)

    async def drain(self, timeout_s: float) -> None:
        """Shutdown: give queued mirrored requests ``timeout_s`` to finish, then stop the workers."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while any(lane.queue or lane.running for lane in self._lanes.values()):
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.01)
        for lane in self._lanes.values():
            if lane.worker is not None:
                lane.worker.cancel()


def join_blocks(blocks: list[RowBlock]) -> RowBlock | None:
    """One block holding every row of ``blocks`` in order (None: forms differ, submit one by one).
    BYTES buffers join by concatenation: V2's length-prefixed elements follow each other."""
    if len(blocks) == 1:
        return blocks[0]
    n_rows = sum(b.n_rows for b in blocks)
    if all(b.matrix is not None for b in blocks):
        return RowBlock(n_rows=n_rows, matrix=np.concatenate([b.matrix for b in blocks]))
    if any(b.columns is None for b in blocks):
        return None
    columns = []
    for parts in zip(*(b.columns for b in blocks)):
        if isinstance(parts[0], np.ndarray):
            columns.append(np.concatenate(parts))
        else:
            columns.append(b"".join(bytes(p) for p in parts))
    return RowBlock(n_rows=n_rows, columns=columns)
