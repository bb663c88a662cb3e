"""deploy/kubernetes: every manifest against the Kubernetes JSON schemas, offline and strict
(unknown fields fail): kubernetes-validate's bundled schemas for built-in kinds, and a small
hand-written schema (schemas/) for the Prometheus operator's ServiceMonitor and PrometheusRule
CRDs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tests.deploy.manifests import KUBERNETES, MANIFESTS, all_documents, documents, find

kv = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is not installed (pip install kubernetes-validate)"
)
jsonschema = pytest.importorskip("jsonschema")  # a dependency of kubernetes-validate

# 1.30: the oldest release with native sidecars and the preStop sleep action on by default
VERSIONS = ("1.30", kv.utils.latest_version())
CRD_SCHEMAS = {("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
               ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring-v1.json"}
SCHEMAS = Path(__file__).parent / "schemas"


def validate(doc: dict, version: str) -> None:
    crd = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
    if crd:
        jsonschema.validate(doc, json.loads((SCHEMAS / crd).read_text()))
    else:
        kv.validate(doc, version, strict=True)


def test_the_manifests_are_there():
    kinds = {doc["kind"] for _, doc in all_documents()}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
        "PodDisruptionBudget",
        "PrometheusRule",
    } <= kinds
    assert len(MANIFESTS) >= 5


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_schema_valid(path, version):
    for doc in documents(path):
        validate(doc, version)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("name"),
        lambda d: d["spec"]["template"]["spec"]["containers"][0].update(livenesProbe={}),
        lambda d: d["spec"].update(replicas="two"),
    ],
    ids=["missing-name", "typo-field", "bad-type"],
)
def test_the_validation_is_real(mutate):
    """The same validator refuses a broken copy: the schemas are found and strict."""
    deployment = copy.deepcopy(find(documents(KUBERNETES / "standalone" / "deployment.yaml"), "Deployment"))
    mutate(deployment)
    with pytest.raises(jsonschema.ValidationError):
        validate(deployment, VERSIONS[0])


def test_the_crd_schema_is_real():
    monitor = copy.deepcopy(
        find(documents(KUBERNETES / "standalone" / "servicemonitor.yaml"), "ServiceMonitor")
    )
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor, VERSIONS[0])
