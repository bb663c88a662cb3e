"""Prometheus metrics. Counters and histograms only where a fleet must add them up, so
Prometheus aggregates replicas and workers; gauges say how they combine across workers.

With ``--workers N`` the parent sets PROMETHEUS_MULTIPROC_DIR before any worker imports
prometheus_client, and /metrics in every worker reports the sum over all of them.
"""

from __future__ import annotations

import os

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from onyxserve.server.drift import DriftCollector, DriftSettings

# 50 µs .. 5 s: the interesting part of a CPU model's latency is well under a millisecond.
LATENCY_BUCKETS = (
    5e-5, 1e-4, 2e-4, 3e-4, 5e-4, 7.5e-4, 1e-3, 1.5e-3, 2e-3, 3e-3, 5e-3, 7.5e-3,
    1e-2, 2e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
MODEL = ("model", "version")

REQUESTS = Counter("onyxserve_requests", "Inference requests by outcome (OK or a gRPC status name).",
                   MODEL + ("outcome",))
ROWS = Counter("onyxserve_rows", "Rows inferred.", MODEL)
REQUEST_SECONDS = Histogram("onyxserve_request_duration_seconds",
                            "Server-side latency of successful requests, arrival to response.",
                            MODEL, buckets=LATENCY_BUCKETS)
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


class ModelMetrics:
    """The per-version children, bound once so the hot path skips label lookups."""

    def __init__(self, model: str, version: str) -> None:
        labels = (model, version)
        self.labels = labels
        self.ok = REQUESTS.labels(*labels, "OK")
        self.rows = ROWS.labels(*labels)
        self.request_seconds = REQUEST_SECONDS.labels(*labels)
        self.queue_seconds = QUEUE_SECONDS.labels(*labels)
        self.compute_seconds = COMPUTE_SECONDS.labels(*labels)
        self.batch_rows = BATCH_ROWS.labels(*labels)
        self.batches = {t: BATCHES.labels(*labels, t) for t in ("full", "delay", "idle")}
        self.queue_depth = QUEUE_DEPTH.labels(*labels)
        self.ready = MODEL_READY.labels(*labels)

    def failed(self, outcome: str) -> None:
        REQUESTS.labels(*self.labels, outcome).inc()


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
