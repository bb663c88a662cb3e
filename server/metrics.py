"""Prometheus metrics. Counters and histograms only where a fleet must add them up, so
Prometheus aggregates replicas and workers; gauges say how they combine across workers.

With ``--workers N`` the parent sets PROMETHEUS_MULTIPROC_DIR before any worker imports
prometheus_client, and /metrics in every worker reports the sum over all of them.
"""

from __future__ import annotations

import os

import numpy as np
from onyxserve.server.drift.collector import DriftCollector
from onyxserve.server.drift.monitor import DriftSettings
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# 50 µs .. 5 s: the interesting part of a CPU model's latency is well under a millisecond.
LATENCY_BUCKETS = (
    5e-5, 1e-4, 2e-4, 3e-4, 5e-4, 7.5e-4, 1e-3, 1.5e-3, 2e-3, 3e-3, 5e-3, 7.5e-3,
    1e-2, 2e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
MODEL = ("model", "version")
# the production variant a request was routed to; "" when it named a version (or none was set up)
ROUTED = MODEL + ("variant",)

REQUESTS = Counter("onyxserve_requests", "Inference requests by outcome (OK or a gRPC status name), by the"
                   " production variant that answered (\"\": the request named a version).",
                   ROUTED + ("outcome",))
ROWS = Counter("onyxserve_rows", "Rows inferred.", MODEL)
REQUEST_SECONDS = Histogram("onyxserve_request_duration_seconds",
                            "Server-side latency of successful requests, arrival to response, by variant.",
                            ROUTED, buckets=LATENCY_BUCKETS)
QUEUE_SECONDS = Histogram("onyxserve_queue_duration_seconds", "Time a request waited for its batch to start.",
                          MODEL, buckets=LATENCY_BUCKETS)
COMPUTE_SECONDS = Histogram("onyxserve_compute_duration_seconds",
                            "Time one batch spent in normalization plus ONNX Runtime.",
                            MODEL, buckets=LATENCY_BUCKETS)
BATCH_ROWS = Histogram("onyxserve_batch_rows", "Rows per executed batch.", MODEL, buckets=BATCH_BUCKETS)
BATCHES = Counter("onyxserve_batches", "Executed batches by what sent them: full, delay or idle.",
                  MODEL + ("trigger",))
QUEUE_DEPTH = Gauge("onyxserve_queue_depth", "Requests left waiting when the last batch started.", MODEL,
                    multiprocess_mode="livesum")
MODEL_READY = Gauge("onyxserve_model_ready", "1 when the model version is loaded and serving.", MODEL,
                    multiprocess_mode="livemax")
MODEL_STAGE = Gauge("onyxserve_model_stage",
                    "1 while the version serves as this registry stage (production, shadow, staging).",
                    MODEL + ("stage",), multiprocess_mode="livemax")
VARIANT_SHARE = Gauge("onyxserve_variant_share",
                      "Share (0..1) of the model's requests without a version routed to this production variant.",
                      ROUTED, multiprocess_mode="livemax")


# ---- shadow evaluation (server/shadow/mirror.py): one series per (model, production version, shadow version)

SHADOW = MODEL + ("shadow_version",)
# |dP| is a probability difference: the 0 bucket counts exact agreement of the scores
PROBABILITY_DIFF_BUCKETS = (0.0, 1e-6, 1e-4, 1e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
VALUE_DIFF_BUCKETS = (0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6)
RELATIVE_DIFF_BUCKETS = (0.0, 1e-6, 1e-5, 1e-4, 1e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
SHADOW_OUTCOMES = ("mirrored", "dropped", "error")

SHADOW_REQUESTS = Counter(
    "onyxserve_shadow_requests",
    "Requests answered by production and mirrored to the shadow version, by outcome: mirrored (the shadow"
    " answered and was compared), dropped (shadow in-flight limit or queue full), error.",
    SHADOW + ("outcome",),
)
SHADOW_ROWS = Counter("onyxserve_shadow_rows", "Rows of the mirrored requests, by the same outcomes.",
                      SHADOW + ("outcome",))
SHADOW_ERRORS = Counter("onyxserve_shadow_errors",
                        "Mirrored requests the shadow failed, by kind: decode, compare or a gRPC status name.",
                        SHADOW + ("kind",))
SHADOW_LABEL_ROWS = Counter("onyxserve_shadow_label_rows",
                            "Classifier rows by whether the shadow's label equals production's: agree, disagree.",
                            SHADOW + ("agreement",))
SHADOW_PROBABILITY_DIFF = Histogram(
    "onyxserve_shadow_probability_diff",
    "Per row |P_shadow - P_production| of the positive class (binary) or of production's top class (multiclass).",
    SHADOW, buckets=PROBABILITY_DIFF_BUCKETS,
)
SHADOW_VALUE_DIFF = Histogram("onyxserve_shadow_value_diff", "Per row |value_shadow - value_production| (regression).",
                              SHADOW, buckets=VALUE_DIFF_BUCKETS)
SHADOW_RELATIVE_DIFF = Histogram(
    "onyxserve_shadow_relative_diff",
    "Per row |value_shadow - value_production| / max(|value_shadow|, |value_production|) (regression; 0..2).",
    SHADOW, buckets=RELATIVE_DIFF_BUCKETS,
)
SHADOW_SECONDS = Histogram("onyxserve_shadow_duration_seconds",
                           "Shadow latency: mirrored request queued (production answered) to compared.",
                           SHADOW, buckets=LATENCY_BUCKETS)
SHADOW_IN_FLIGHT = Gauge("onyxserve_shadow_in_flight", "Mirrored requests waiting for the shadow version.",
                         SHADOW, multiprocess_mode="livesum")


def observe_many(histogram, values: np.ndarray) -> None:
    """Observe every value of ``values`` in one labelled Histogram child: one bucket search
    in numpy instead of a Python observe per row. Uses the child's ``_upper_bounds``,
    ``_buckets`` (per-bucket, not cumulative) and ``_sum`` -- prometheus_client internals
    (tests/server/shadow/test_shadow_units.py checks the result equals per-value ``observe``);
    without them it falls back to ``observe``."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0:
        return
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(buckets) != len(bounds):
        for v in values.tolist():
            histogram.observe(v)
        return
    # observe() puts v in the first bucket with v <= bound: searchsorted side="left"
    counts = np.bincount(np.searchsorted(np.asarray(bounds, dtype=np.float64), values, side="left"),
                         minlength=len(bounds))
    for i in np.flatnonzero(counts[: len(bounds)]).tolist():
        buckets[i].inc(int(counts[i]))
    total.inc(float(values.sum()))


class RequestMetrics:
    """One version's request children for one variant label."""

    def __init__(self, model: str, version: str, variant: str) -> None:
        self.labels = (model, version, variant)
        self.ok = REQUESTS.labels(*self.labels, "OK")
        self.request_seconds = REQUEST_SECONDS.labels(*self.labels)

    def failed(self, outcome: str) -> None:
        REQUESTS.labels(*self.labels, outcome).inc()


class ModelMetrics:
    """The per-version children, bound once so the hot path skips label lookups."""

    def __init__(self, model: str, version: str) -> None:
        labels = (model, version)
        self.labels = labels
        self._direct = RequestMetrics(model, version, "")
        self._routed: dict[str, RequestMetrics] = {}  # variant name -> children, bound on first use
        self.ok = self._direct.ok
        self.rows = ROWS.labels(*labels)
        self.request_seconds = self._direct.request_seconds
        self.queue_seconds = QUEUE_SECONDS.labels(*labels)
        self.compute_seconds = COMPUTE_SECONDS.labels(*labels)
        self.batch_rows = BATCH_ROWS.labels(*labels)
        self.batches = {t: BATCHES.labels(*labels, t) for t in ("full", "delay", "idle")}
        self.queue_depth = QUEUE_DEPTH.labels(*labels)
        self.ready = MODEL_READY.labels(*labels)

    def failed(self, outcome: str) -> None:
        self._direct.failed(outcome)

    def requests(self, variant: str | None) -> RequestMetrics:
        """The request children of the variant a request was routed to (None: it named a version)."""
        if variant is None:
            return self._direct
        children = self._routed.get(variant)
        if children is None:
            children = self._routed[variant] = RequestMetrics(*self.labels, variant)
        return children


# drift counts are read from the monitors' arrays at scrape time (no per-batch Prometheus call)
REGISTRY.register(DriftCollector())


def render() -> bytes:
    """The exposition text: this process's registry, or all workers' in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(DriftCollector(DriftSettings.from_environment().directory))  # every worker's files
        return generate_latest(registry)
    return generate_latest()
