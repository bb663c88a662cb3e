"""One loaded model version: scorer, request decoder, batcher, metrics and its V2 description."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from onyxserve.core.decision import thresholded_labels
from onyxserve.core.normalizer import FeatureValueError, RowBlock
from onyxserve.core.scorer import OnnxScorer, load_version
from onyxserve.repository.config import ModelConfig
from onyxserve.server.batcher import BatchResult, DynamicBatcher, Outputs
from onyxserve.server.drift.monitor import DriftMonitor, DriftSettings
from onyxserve.server.errors import InvalidInput
from onyxserve.server.metrics import ModelMetrics
from onyxserve.server.models.decoder import MATRIX_INPUT, RowDecoder
from onyxserve.server.tensors import Tensor

PLATFORM = "onnxruntime_onnx"


# How a client sends a missing value, per input datatype: shown in ModelConfig's parameters and
# REST metadata because V2's ModelMetadata has no field for it (README: precision and missing values).
MISSING_VALUE = {"FP64": "NaN (null in REST JSON)", "BYTES": 'the empty string ""'}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 is the batch dimension


class ServedModel:
    def __init__(self, scorer: OnnxScorer, config: ModelConfig, drift: DriftMonitor | None = None) -> None:
        manifest = scorer.manifest
        self.name = manifest.name
        self.version = manifest.version
        self.manifest = manifest
        self.scorer = scorer
        self.config = config
        self.decoder = RowDecoder(manifest)
        self.metrics = ModelMetrics(self.name, self.version)
        self.batcher = DynamicBatcher(f"{self.name}/{self.version}", self.run_batch, config, self.metrics)
        self.inputs = self._describe_inputs()
        self.outputs = self._describe_outputs()
        self.output_types = {o.name: o.datatype for o in self.outputs}  # looked up per request
        # binary models: the registry's decision threshold for this version (None: the graph's label)
        self.threshold: float | None = None
        self.drift = drift  # None: drift counting is off

    @classmethod
    def load(
        cls, version_dir: Path, config: ModelConfig, intra_op_threads: int, drift: DriftSettings | None = None
    ) -> ServedModel:
        """Blocking: reads and verifies files and builds the ORT session (run it off the loop).
        With drift on, the normalizer counts raw values into the monitor's sketches.
        ``intra_op_threads``: the server's; a tree ensemble runs with one unless its config.json
        asks for more (OnnxScorer: so that it answers what batch prediction computes)."""
        threads = {"intra_op_threads": config.intra_op_threads or None, "default_threads": intra_op_threads or None}
        if drift is None or not drift.enabled:
            return cls(load_version(version_dir, **threads), config)
        monitor = DriftMonitor(_with_model_windows(drift, config))
        try:
            scorer = load_version(version_dir, **threads, sketch_edges=monitor.sketch_edges,
                                  allocate_counts=monitor.allocate)
            monitor.bind(scorer.normalizer.sketch_counts)
        except BaseException:
            monitor.close()  # its count file, if any
            raise
        return cls(scorer, config, monitor)

    async def start(self) -> None:
        await self.batcher.start()
        if self.drift is not None:
            self.drift.start()
        self.metrics.ready.set(1)

    async def stop(self, grace_s: float) -> None:
        self.metrics.ready.set(0)
        await self.batcher.stop(grace_s)
        if self.drift is not None:
            self.drift.close()

    async def infer(self, tensors: Sequence[Tensor], timeout_s: float | None = None) -> Outputs:
        block = self.decoder.decode(tensors)
        return await self.batcher.submit(block, timeout_s)

    async def infer_block(self, block: RowBlock, timeout_s: float | None = None) -> Outputs:
        """Rows already decoded against this version's features (shared with the shadow mirror)."""
        return await self.batcher.submit(block, timeout_s)

    def run_batch(self, blocks: Sequence[RowBlock]) -> BatchResult:
        """Compute thread: one gather+normalize pass, one ORT run. A block with a bad value
        fails alone; the rest of the batch still runs."""
        normalizer = self.scorer.normalizer
        failed: dict[int, Exception] = {}
        started = time.perf_counter_ns()
        try:
            batch, texts = normalizer.prepare(blocks)
        except FeatureValueError:
            sketches = [(c, c.copy()) for c in normalizer.sketch_counts.values()]
            good = []
            for i, block in enumerate(blocks):
                try:
                    normalizer.prepare((block,))
                    good.append(block)
                except FeatureValueError as exc:
                    failed[i] = InvalidInput(f"model '{self.name}' input {exc}")
            for counts, before in sketches:  # the probes counted the good blocks: count them once
                counts[:] = before
            if not good:
                return BatchResult({}, failed)
            batch, texts = normalizer.prepare(good)
        normalized = time.perf_counter_ns()
        outputs = self.scorer.run(batch, texts)
        if self.drift is not None:
            self.drift.observe(outputs)
        threshold = self.threshold  # read once: the repository may change it between batches
        if threshold is not None and "probabilities" in outputs:
            outputs["label"] = thresholded_labels(
                outputs["probabilities"], outputs["label"], self.manifest.labels, threshold
            )
        return BatchResult(outputs, failed, normalized - started, time.perf_counter_ns() - normalized)

    def _describe_inputs(self) -> tuple[TensorInfo, ...]:
        """Numbers as FP64: batch prediction and evaluate read float64 from the files, so a
        client sending FP64 sends the same bytes and gets their scores bit for bit. FP32 is
        accepted too; it rounds each raw value before the scaler (README: Precision)."""
        features = self.manifest.features
        per_feature = tuple(
            TensorInfo(f.name, "BYTES" if f.is_bytes else "FP64", (-1,)) for f in features
        )
        if self.manifest.all_numeric:
            return (TensorInfo(MATRIX_INPUT, "FP64", (-1, len(features))),)
        return per_feature

    def _describe_outputs(self) -> tuple[TensorInfo, ...]:
        if self.manifest.task == "regression":
            return (TensorInfo("value", "FP32", (-1,)),)
        labels = self.manifest.labels or ()
        label_type = "BYTES" if any(isinstance(v, str) for v in labels) else "INT64"
        return (
            TensorInfo("label", label_type, (-1,)),
            TensorInfo("probabilities", "FP32", (-1, len(labels))),
        )


def _with_model_windows(drift: DriftSettings, config: ModelConfig) -> DriftSettings:
    """The server's drift settings with this model's window (config.json) where it sets one."""
    changes: dict[str, float] = {}
    if config.drift_window_rows:
        changes["window_rows"] = config.drift_window_rows
    if config.drift_window_seconds:
        changes["window_s"] = float(config.drift_window_seconds)
    return dataclasses.replace(drift, **changes) if changes else drift
