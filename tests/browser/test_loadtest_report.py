"""The load-test report, from real runs of ``onyxserve loadtest`` against the real server, looked at
in headless Chromium: one target with a stability check and drift, and a comparison. Windows of
about 1 s, one load process."""

from __future__ import annotations

import pytest
from onyxserve.clients.loadtest.cli import standalone

from tests.browser.checks import assert_readable_report, table_with

pytestmark = pytest.mark.timeout(120)

SHORT = ["--warmup", "200ms", "--duration", "1s", "--processes", "1", "--connections", "1"]
OVER_TIME = ["Latency and throughput over time", "Latency percentiles", "Throughput against concurrency"]


def test_single_target_report(browser, server, tmp_path, capsys):
    page = tmp_path / "run.html"
    code = standalone([
        server.grpc_target, "--model", "fraud", "--concurrency", "1,2", *SHORT,
        "--stable", "50%", "--max-windows", "3", "--drift", "f14:shift=1", "--drift-from", "1s",
        "--html", str(page),
    ])
    assert code == 0, capsys.readouterr().err

    view = browser.open(page)
    assert_readable_report(view, "Load test", ["Results", *OVER_TIME, "Errors by code"], images=3)
    results = table_with(view, "target")
    assert results["header"][:4] == ["target", "load", "req/s", "p50 ms"]
    assert [row[1] for row in results["cells"]] == ["c=1", "c=2"]
    assert all(float(row[2].replace(",", "")) > 0 for row in results["cells"]), results["cells"]


def test_comparison_report(browser, server, tmp_path, capsys):
    page = tmp_path / "cmp.html"
    code = standalone([
        server.grpc_target, "--compare", server.grpc_target, "--model", "fraud",
        "--concurrency", "1,2", *SHORT, "--html", str(page),
    ])
    assert code == 0, capsys.readouterr().err

    view = browser.open(page)
    assert_readable_report(
        view, "Load test comparison", ["Results", "Ratios (B / A)", *OVER_TIME, "Errors by code"], images=3
    )
    assert [row[0] for row in table_with(view, "target")["cells"]] == ["A", "A", "B", "B"]
    assert [row[0] for row in table_with(view, "load")["cells"]] == ["c=1", "c=2"]
