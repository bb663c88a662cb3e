"""``--workers N``: N serving processes sharing the ports through SO_REUSEPORT.

The parent only supervises: it points prometheus-client's multiprocess mode at a fresh
folder before any worker starts (so /metrics in any worker reports all of them), forwards
SIGTERM/SIGINT, and exits 0 when every worker drained cleanly.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
import signal
import tempfile

from onyxserve.server.settings import Settings

log = logging.getLogger("onyxserve")


def _worker(settings: Settings) -> None:
    from onyxserve.server.app import serve

    from onyxserve.cli.serve import configure_logging, run_event_loop

    configure_logging(settings.log_level)
    raise SystemExit(run_event_loop(serve(settings)))


def run_workers(settings: Settings) -> int:
    if settings.grpc_port == 0 or settings.http_port == 0:
        raise SystemExit("--workers > 1 needs fixed ports (0 would give every worker its own)")
    if settings.uds is not None:
        raise SystemExit("--uds serves one process; use it with --workers 1")
    metrics_dir = tempfile.mkdtemp(prefix="onyxserve-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    ctx = mp.get_context("spawn")  # workers import prometheus_client fresh, in multiprocess mode
    workers = [ctx.Process(target=_worker, args=(settings,), name=f"onyxserve-worker-{i}") for i in range(settings.workers)]
    for w in workers:
        w.start()

    def forward(signum, frame) -> None:
        for w in workers:
            if w.is_alive():
                os.kill(w.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    log.info("started %d workers: %s", len(workers), [w.pid for w in workers])
    codes = []
    try:
        for w in workers:
            w.join()
            codes.append(w.exitcode)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    failed = [c for c in codes if c != 0]
    if failed:
        log.error("workers exited with %s", codes)
        return 1
    return 0
