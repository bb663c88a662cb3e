"""deploy/kubernetes, what the schemas cannot say (those are checked in test_kubernetes_schemas.py):
probes on grpc.health.v1 at the gRPC port, shutdown budgets, the native sidecar, thread count tied
to the CPU limit, a read-only repository, Services, HPA, ServiceMonitor and PDB that fit together."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import (
    KUBERNETES,
    container,
    container_serve_args,
    documents,
    env_value,
    find,
)

# --- semantics shared by both deployments ---------------------------------------------------


def pod_spec(path: Path, name: str) -> dict:
    return find(documents(path), "Deployment", name)["spec"]["template"]["spec"]


SIDECAR = pod_spec(KUBERNETES / "sidecar.yaml", "fraud-app")
STANDALONE = pod_spec(KUBERNETES / "standalone" / "deployment.yaml", "onyxserve")
BOTH = pytest.mark.parametrize("spec", [SIDECAR, STANDALONE], ids=["sidecar", "standalone"])


@BOTH
def test_probes_use_grpc_health_on_the_grpc_port(spec):
    onyx = container(spec, "onyxserve")
    args = container_serve_args(onyx)
    grpc_port = args.grpc_port or 8001
    assert {"name": "grpc", "containerPort": grpc_port, "protocol": "TCP"} in onyx["ports"]
    assert args.host == "0.0.0.0", "the kubelet dials the pod IP: a loopback-only server fails its probes"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        grpc = onyx[probe]["grpc"]  # the kubelet's built-in grpc.health.v1 client
        assert grpc["port"] == grpc_port, probe
        assert grpc.get("service", "") in ("", "fraud"), probe  # "" or a model name
    assert onyx["livenessProbe"]["grpc"].get("service", "") == "", "liveness must not depend on one model"


@BOTH
def test_liveness_does_not_cut_the_drain(spec):
    onyx = container(spec, "onyxserve")
    args = container_serve_args(onyx)
    live = onyx["livenessProbe"]
    assert (
        live["periodSeconds"] * live["failureThreshold"]
        > (args.shutdown_delay_s or 0) + args.shutdown_grace_s
    )


@BOTH
def test_threads_follow_the_cpu_limit(spec):
    onyx = container(spec, "onyxserve")
    ref = env_value(onyx, "ONYXSERVE_INTRA_OP_THREADS")["valueFrom"]["resourceFieldRef"]
    assert ref == {"containerName": "onyxserve", "resource": "limits.cpu", "divisor": "1"}
    assert onyx["resources"]["limits"]["cpu"]


@BOTH
def test_resources_and_security(spec):
    assert spec["securityContext"]["runAsNonRoot"] is True
    for c in spec.get("initContainers", []) + spec["containers"]:
        for kind in ("requests", "limits"):
            assert set(c["resources"][kind]) == {"cpu", "memory"}, (c["name"], kind)
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert "/tmp" in mounts, f"{c['name']}: a read-only root needs a writable /tmp"


@BOTH
def test_repository_is_mounted_read_only(spec):
    onyx = container(spec, "onyxserve")
    repository = str(container_serve_args(onyx).repository)
    mount = next(m for m in onyx["volumeMounts"] if m["mountPath"] == repository)
    assert mount["readOnly"] is True


# --- the sidecar ------------------------------------------------------------------------------


def test_sidecar_is_a_native_sidecar():
    names = [c["name"] for c in SIDECAR["initContainers"]]
    assert "onyxserve" in names and "onyxserve" not in [c["name"] for c in SIDECAR["containers"]]
    assert container(SIDECAR, "onyxserve")["restartPolicy"] == "Always"
    # the S3 sync is a plain init container that finishes before the sidecar starts
    fetch = container(SIDECAR, "fetch-models")
    assert "restartPolicy" not in fetch and names.index("fetch-models") < names.index("onyxserve")
    assert fetch["command"][:3] == ["aws", "s3", "sync"]
    models = next(m for m in fetch["volumeMounts"] if m["mountPath"] == fetch["command"][4])
    assert models["name"] == "models" and not models.get("readOnly")


def test_sidecar_socket_is_shared_with_the_app():
    onyx, app = container(SIDECAR, "onyxserve"), container(SIDECAR, "app")
    uds = container_serve_args(onyx).uds
    assert env_value(app, "ONYXSERVE_TARGET")["value"] == f"unix://{uds}"
    volume = {m["name"] for c in (onyx, app) for m in c["volumeMounts"] if m["mountPath"] == str(uds.parent)}
    assert len(volume) == 1, "both containers mount the socket's folder from the same volume"
    assert "emptyDir" in next(v for v in SIDECAR["volumes"] if v["name"] in volume)
    ids = SIDECAR["securityContext"]
    assert ids["runAsUser"] and ids["runAsGroup"], (
        "one uid for both: connecting needs write access to the socket"
    )


def test_sidecar_shutdown_budget():
    """Sidecars stop after the app: app preStop + app drain + onyxserve delay + grace < grace period."""
    onyx, app = container(SIDECAR, "onyxserve"), container(SIDECAR, "app")
    args = container_serve_args(onyx)
    app_budget = app["lifecycle"]["preStop"]["sleep"]["seconds"] + float(
        env_value(app, "APP_SHUTDOWN_GRACE_S")["value"]
    )
    onyx_budget = onyx.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    onyx_budget += (args.shutdown_delay_s or 0) + args.shutdown_grace_s
    assert app_budget + onyx_budget < SIDECAR["terminationGracePeriodSeconds"]


def test_sidecar_readiness_waits_for_the_model():
    assert container(SIDECAR, "onyxserve")["readinessProbe"]["grpc"]["service"] == "fraud"


def test_sidecar_network_policy_covers_the_pod():
    docs = documents(KUBERNETES / "sidecar.yaml")
    policy = find(docs, "NetworkPolicy")
    labels = find(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    open_ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert 8001 not in open_ports


# --- standalone -------------------------------------------------------------------------------

STANDALONE_DOCS = [
    doc for path in sorted((KUBERNETES / "standalone").glob("*.yaml")) for doc in documents(path)
]


def test_standalone_shutdown_budget():
    onyx = container(STANDALONE, "onyxserve")
    args = container_serve_args(onyx)
    pre_stop = onyx["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert args.shutdown_delay_s > 0 and pre_stop > 0
    assert (
        pre_stop + args.shutdown_delay_s + args.shutdown_grace_s < STANDALONE["terminationGracePeriodSeconds"]
    )


def test_standalone_service_ports():
    pod_labels = find(STANDALONE_DOCS, "Deployment")["spec"]["template"]["metadata"]["labels"]
    onyx = container(STANDALONE, "onyxserve")
    named = {p["name"]: p["containerPort"] for p in onyx["ports"]}
    args = container_serve_args(onyx)
    assert named == {"grpc": args.grpc_port, "http": args.http_port}
    service = find(STANDALONE_DOCS, "Service", "onyxserve")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["grpc"]["port"] == 8001 and ports["grpc"]["appProtocol"] == "grpc"
    assert ports["http"]["port"] == 8000 and ports["http"]["appProtocol"] == "http"
    assert all(p["targetPort"] in named for p in ports.values())
    assert find(STANDALONE_DOCS, "Service", "onyxserve-grpc")["spec"]["clusterIP"] == "None"


def test_hpa_targets_the_deployment_with_adapter_metrics():
    hpa = find(STANDALONE_DOCS, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "onyxserve",
    }
    names = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    rules = yaml.safe_load((KUBERNETES / "prometheus-adapter" / "values.yaml").read_text())["rules"]["custom"]
    assert names and names <= {rule["name"]["as"] for rule in rules}, "every HPA metric has an adapter rule"


def test_service_monitor_scrapes_the_metrics_port_once():
    monitor = find(STANDALONE_DOCS, "ServiceMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"].items()
    selected = [
        s for s in STANDALONE_DOCS if s["kind"] == "Service" and wanted <= s["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in selected] == ["onyxserve"], (
        "the headless Service would double the series"
    )
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in selected[0]["spec"]["ports"]}


def test_pdb_selects_the_pods():
    pdb = find(STANDALONE_DOCS, "PodDisruptionBudget")
    pod_labels = find(STANDALONE_DOCS, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert (
        pdb["spec"]["minAvailable"] < find(STANDALONE_DOCS, "HorizontalPodAutoscaler")["spec"]["minReplicas"]
    )
