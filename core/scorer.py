"""Load one model version and score rows: compiled normalization, then ONNX Runtime.

The server, the export parity gate and batch prediction all score through this class, so
online and offline scores are the same numbers. Only ``model.onnx`` and ``manifest.json`` are
read; nothing is unpickled, and the ONNX file must match the manifest's sha256.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onyxserve.core.cpu import available_cpus
from onyxserve.core.normalizer import FeatureNormalizer, RowBlock
from onyxserve.repository.manifest import Manifest, ManifestError
from onyxserve.repository.store import MANIFEST_FILE, sha256_bytes

from onyxserve.errors import OnyxserveError

# drift sketch edges by feature name, or a function of the loaded manifest returning them
SketchEdges = Mapping[str, np.ndarray | None] | Callable[[Manifest], Mapping[str, np.ndarray | None]] | None


class ModelLoadError(OnyxserveError):
    """A model version that cannot be served; the message names the file and the reason."""


_ORT_INPUT_TYPES = {"float32": "tensor(float)", "float64": "tensor(double)"}


def _graph_has(onnx_bytes: bytes, *op_types: bytes) -> bool:
    """Whether the graph has a node of one of ``op_types``: op types are plain strings in the
    protobuf, so a byte search answers without the onnx package (which serving does not need);
    a doc string naming one only costs the optimisation below."""
    return any(op in onnx_bytes for op in op_types)


def sums_trees(onnx_bytes: bytes) -> bool:
    """A tree ensemble: with more than one ORT thread, onnxruntime sums a small batch's trees in
    per-thread partial sums, so a row's score moves by an ulp with the batch it is in (measured:
    834 of 1,000 rows of a 100-tree forest, batches of 1-25 rows, 2 threads; none with 1)."""
    return _graph_has(onnx_bytes, b"TreeEnsembleRegressor", b"TreeEnsembleClassifier", b"TreeEnsemble")


def _rounds_single_rows(onnx_bytes: bytes) -> bool:
    """ai.onnx.ml's LinearClassifier/LinearRegressor take another kernel for a one-row input,
    which rounds differently (measured: an ulp on ~1 in 2 outputs, any thread count)."""
    return _graph_has(onnx_bytes, b"LinearClassifier", b"LinearRegressor")


def session_options(intra_op_threads: int | None = None) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    threads = intra_op_threads or available_cpus()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning worker threads burn the cores the gRPC threads need between small batches.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


class OnnxScorer:
    """A loaded version: its manifest, its compiled normalizer and its ORT session."""

    def __init__(
        self,
        manifest: Manifest,
        onnx_bytes: bytes,
        *,
        intra_op_threads: int | None = None,
        sketch_edges: SketchEdges = None,
        allocate_counts: Callable[[int], np.ndarray] | None = None,
        default_threads: int | None = None,
    ) -> None:
        """``intra_op_threads``: as asked (a model's config); else a tree ensemble gets one, so its
        scores do not depend on the batch, and any other graph ``default_threads`` (None: the
        CPUs this process may use)."""
        self.manifest = manifest
        if callable(sketch_edges):  # built from the manifest just read (its baseline)
            sketch_edges = sketch_edges(manifest)
        self.normalizer = FeatureNormalizer.from_manifest(manifest, sketch_edges, allocate_counts)
        self.intra_op_threads = intra_op_threads or (1 if sums_trees(onnx_bytes) else default_threads)
        self.session = ort.InferenceSession(
            onnx_bytes, sess_options=session_options(self.intra_op_threads), providers=["CPUExecutionProvider"]
        )
        expected = [manifest.model.input_name, *(f.text.input_name for f in manifest.text_features)]
        inputs = {i.name: i.type for i in self.session.get_inputs()}
        if sorted(inputs) != sorted(expected):
            raise ModelLoadError(
                f"{manifest.name}/{manifest.version}: ONNX inputs {list(inputs)} do not match the manifest's {expected}"
            )
        want = _ORT_INPUT_TYPES[manifest.model.input_dtype]
        if inputs[manifest.model.input_name] != want:
            raise ModelLoadError(
                f"{manifest.name}/{manifest.version}: ONNX input '{manifest.model.input_name}' is"
                f" {inputs[manifest.model.input_name]}, the manifest's input_dtype {manifest.model.input_dtype} needs {want}"
            )
        self._pad_single = _rounds_single_rows(onnx_bytes)
        onnx_outputs = {o.name for o in self.session.get_outputs()}
        missing = set(manifest.model.outputs.values()) - onnx_outputs
        if missing:
            raise ModelLoadError(f"{manifest.name}/{manifest.version}: ONNX graph lacks outputs {sorted(missing)}")
        self._served_names = list(manifest.model.outputs)
        self._onnx_names = [manifest.model.outputs[n] for n in self._served_names]

    def run(self, batch: np.ndarray, texts: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Run the estimator on a normalized ``[N, input_width]`` batch (the manifest's
        ``input_dtype``; plus, for text features, their ``[N, 1]`` string arrays:
        ``FeatureNormalizer.texts``).

        Returns served outputs: ``label`` ``[N]`` and ``probabilities`` ``[N, C]`` float32,
        or ``value`` ``[N]`` float32. A row's scores do not depend on the batch it is in.
        """
        feeds = {self.manifest.model.input_name: batch}
        if texts:
            feeds.update(texts)
        single = self._pad_single and len(batch) == 1
        if single:  # scored as two equal rows: the kernel every larger batch takes
            feeds = {k: np.concatenate([v, v]) for k, v in feeds.items()}
        results = self.session.run(self._onnx_names, feeds)
        if single:
            results = [r[:1] for r in results]
        out = dict(zip(self._served_names, results))
        if "value" in out:
            out["value"] = np.ascontiguousarray(out["value"], dtype=np.float32).reshape(-1)
        if "probabilities" in out:
            out["probabilities"] = np.ascontiguousarray(out["probabilities"], dtype=np.float32)
            out["label"] = np.asarray(out["label"]).reshape(-1)
        return out

    def score(self, blocks: Sequence[RowBlock], out: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Normalize and run: the whole offline path in one call. ``out``: a
        ``[rows, input_width]`` batch matrix of the model's input dtype to normalize into (reused by batch prediction);
        ORT copies its outputs, so ``out`` is free again when this returns."""
        return self.run(*self.normalizer.prepare(blocks, out))


def load_manifest(version_dir: str | Path) -> Manifest:
    """The version's manifest alone (cheap: no ONNX); ModelLoadError names the file."""
    manifest_path = Path(version_dir) / MANIFEST_FILE
    try:
        return Manifest.load(manifest_path)
    except FileNotFoundError:
        raise ModelLoadError(f"{manifest_path}: missing") from None
    except ManifestError as exc:
        raise ModelLoadError(str(exc)) from None


def load_version(
    version_dir: str | Path,
    *,
    intra_op_threads: int | None = None,
    sketch_edges: SketchEdges = None,
    allocate_counts: Callable[[int], np.ndarray] | None = None,
    manifest: Manifest | None = None,
    default_threads: int | None = None,
) -> OnnxScorer:
    """Read, verify and load ``version_dir``; ModelLoadError says what is wrong and where.
    ``intra_op_threads``, ``default_threads``: see ``OnnxScorer``.
    ``sketch_edges`` and ``allocate_counts``: the normalizer's drift sketches (FeatureNormalizer).
    ``manifest``: the one ``load_manifest`` already read (batch prediction reads it first)."""
    version_dir = Path(version_dir)
    if manifest is None:
        manifest = load_manifest(version_dir)
    model_path = version_dir / manifest.model.file
    try:
        onnx_bytes = model_path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"{model_path}: cannot read ({exc.strerror})") from None
    digest = sha256_bytes(onnx_bytes)
    if digest != manifest.model.sha256:
        raise ModelLoadError(
            f"{model_path}: sha256 {digest[:12]}… does not match the manifest's {manifest.model.sha256[:12]}…"
            " (file changed or corrupted)"
        )
    try:
        return OnnxScorer(
            manifest, onnx_bytes, intra_op_threads=intra_op_threads, sketch_edges=sketch_edges,
            allocate_counts=allocate_counts, default_threads=default_threads,
        )
    except ModelLoadError:
        raise
    except Exception as exc:  # ORT raises its own types for invalid graphs
        raise ModelLoadError(f"{model_path}: onnxruntime cannot load it: {exc}") from None
