"""deploy/prometheus/onyxserve-drift-rules.yaml: valid for promtool (Debian's prometheus
package), the PrometheusRule manifest holds the same groups, and the alerts fire on the gauges
as the server exports them (promtool's rule unit tests). CI installs promtool
(ONYXSERVE_REQUIRE_PROMTOOL=1: these tests fail rather than skip without it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import DEPLOY, KUBERNETES, documents, find

RULES = DEPLOY / "prometheus" / "onyxserve-drift-rules.yaml"
OPERATOR = KUBERNETES / "standalone" / "prometheusrule.yaml"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("ONYXSERVE_REQUIRE_PROMTOOL"):
            pytest.fail("promtool is required here (apt-get install prometheus)")
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return path


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd)


def test_the_operator_manifest_holds_the_rules_file():
    rule = find(documents(OPERATOR), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert {"OnyxserveFeatureDrift", "OnyxservePredictionDrift"} <= set(alerts)


def test_promtool_checks_both(tmp_path):
    done = run("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    spec = tmp_path / "operator-rules.yaml"
    spec.write_text(yaml.safe_dump(find(documents(OPERATOR), "PrometheusRule")["spec"]))
    done = run("check", "rules", str(spec))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alerts_fire_on_the_exported_gauges(tmp_path):
    """Two pods; series a flagged in one pod's window from minute 2: the feature alert fires
    (once, merged by max), the prediction alert does not; a stale window alerts after 3 h."""
    base = 'onyxserve_drift_drifted{model="shop",version="1",kind="%s",series="%s",view="window",pod="%s"}'
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": base % ("feature", "a", "p1"), "values": "0 0 1 1 1 1"},
                {"series": base % ("feature", "a", "p2"), "values": "0 0 0 0 0 0"},
                {"series": base % ("feature", "b", "p1"), "values": "0 0 0 0 0 0"},
                {"series": base % ("prediction", "label", "p1"), "values": "0 0 0 0 0 0"},
                {"series": 'onyxserve_drift_window_end_timestamp_seconds{model="shop",version="1",pod="p1"}',
                 "values": "0x300"},
            ],
            "alert_rule_test": [
                {"eval_time": "1m", "alertname": "OnyxserveFeatureDrift", "exp_alerts": []},
                {"eval_time": "3m", "alertname": "OnyxserveFeatureDrift", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "model": "shop", "version": "1", "series": "a"},
                    "exp_annotations": {
                        "summary": "shop v1: feature a drifted",
                        "description": "In the last closed drift window the live distribution of a differs from the"
                        " training baseline (adjusted p-value at most the server's drift_alpha). See GET"
                        " /v2/models/shop/versions/1/drift or onyxserve drift-report.",
                    },
                }]},
                {"eval_time": "5m", "alertname": "OnyxservePredictionDrift", "exp_alerts": []},
                {"eval_time": "4h", "alertname": "OnyxserveDriftWindowStale", "exp_alerts": [{
                    "exp_labels": {"severity": "info", "model": "shop", "version": "1"},
                    "exp_annotations": {
                        "summary": "shop v1: no drift window closed for 3 hours",
                        "description": "Drift windows close by time (drift_window_s) or rows (drift_window_rows);"
                        " none has closed for 3 hours, so the drift alerts above are not being evaluated on"
                        " fresh data.",
                    },
                }]},
            ],
        }],
    }
    path = tmp_path / "drift-rules.test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    done = run("test", "rules", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
