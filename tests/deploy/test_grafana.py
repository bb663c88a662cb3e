"""deploy/grafana: the dashboard loads, takes its data source from a variable, and every PromQL
query (and every prometheus-adapter rule) names only series a real server exports."""

from __future__ import annotations

import json
import re
import urllib.request

import numpy as np
import pytest
import yaml
from onyxserve.clients import InferenceClient

from tests.deploy.manifests import DEPLOY, KUBERNETES

DASHBOARD = json.loads((DEPLOY / "grafana" / "onyxserve-dashboard.json").read_text())
METRIC = re.compile(r"\bonyxserve_[a-z0-9_]+\b")


def panels() -> list[dict]:
    return [p for p in DASHBOARD["panels"] if p["type"] != "row"]


def queries() -> list[str]:
    return [t["expr"] for p in panels() for t in p["targets"]]


@pytest.fixture(scope="module")
def exported(server) -> set[str]:
    """Series names on a real server's /metrics after it has answered a request."""
    with InferenceClient(server.grpc_target) as client:
        client.predict("fraud", np.zeros((3, 30), dtype=np.float32))
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    # families declared with no sample yet (labelled series appear once a shadow or stage exists)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    declared = {
        name.removesuffix("_total") + suffix  # a counter's TYPE line may or may not carry _total
        for line in text.splitlines()
        if line.startswith("# TYPE onyxserve_")
        for name, kind in [line.split()[2:4]]
        for suffix in suffixes.get(kind, ("",))
    }
    return samples | declared


def test_datasource_is_a_variable():
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    for p in panels():
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"]), p["title"]
    assert variables["model"]["datasource"]["uid"] == "${datasource}"


def test_layout_is_sane():
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for p in DASHBOARD["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
    for p in panels():
        ref_ids = [t["refId"] for t in p["targets"]]
        assert ref_ids and len(ref_ids) == len(set(ref_ids)), p["title"]


def test_quantiles_sum_buckets_by_le():
    quantile_queries = [q for q in queries() if "histogram_quantile" in q]
    assert len(quantile_queries) >= 6  # p50 and p99 of request, queue and compute time
    for q in quantile_queries:
        assert re.search(r"histogram_quantile\(0\.\d+, sum by \(le\b.*\(rate\(onyxserve_\w+_bucket\{", q), q


def test_queries_name_only_exported_series(exported):
    for q in queries():
        names = set(METRIC.findall(q))
        assert names, f"no onyxserve metric in {q}"
        assert names <= exported, f"{names - exported} not exported; query: {q}"


def test_every_metric_family_is_on_the_dashboard(exported):
    families = {
        re.sub(r"_(bucket|sum|count|created|total)$", "", n) for n in exported if n.startswith("onyxserve_")
    }
    shown = {re.sub(r"_(bucket|sum|count|total)$", "", n) for q in queries() for n in METRIC.findall(q)}
    assert families <= shown, f"not on the dashboard: {families - shown}"


def test_variable_query_uses_an_exported_series(exported):
    model = next(v for v in DASHBOARD["templating"]["list"] if v["name"] == "model")
    assert set(METRIC.findall(model["definition"])) <= exported


def test_prometheus_adapter_rules_use_exported_series(exported):
    rules = yaml.safe_load((KUBERNETES / "prometheus-adapter" / "values.yaml").read_text())["rules"]["custom"]
    for rule in rules:
        names = set(METRIC.findall(rule["seriesQuery"]))
        assert names and names <= exported, rule["seriesQuery"]
        assert re.fullmatch(rule["name"]["matches"].strip("^$"), next(iter(names)))
