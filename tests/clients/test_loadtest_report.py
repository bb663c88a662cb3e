"""The harness's second half against the real onyxserve server: drift injection, the stability
check, the HTML report, the comparison mode and one-line failures. Every run is short (windows of
about 1 s, one load process)."""

from __future__ import annotations

import json
import re
import threading
import time

import grpc
import numpy as np
import pytest
from onyxserve.clients.loadtest.api import prepare
from onyxserve.clients.loadtest.cli import standalone
from onyxserve.clients.loadtest.drift import Drift, parse_drift
from onyxserve.clients.loadtest.requests import decode_request
from onyxserve.protos import grpc_service_pb2 as pb
from onyxserve.protos import grpc_service_pb2_grpc as pb_grpc

from tests.model_factory import fraud_frame
from tests.serving import ServerProcess

SHORT = ["--warmup", "200ms", "--duration", "1s", "--processes", "1", "--connections", "1"]


@pytest.fixture(scope="module")
def fraud_csv(tmp_path_factory):
    frame, _ = fraud_frame(n=200, seed=5)
    path = tmp_path_factory.mktemp("rows") / "fraud.csv"
    frame.to_csv(path, index=False)
    return path


def test_drift_specs_parse_and_refuse_nonsense():
    assert parse_drift("V14:shift=2.5") == Drift("V14", shift=2.5)
    assert parse_drift("Amount:scale=3") == Drift("Amount", scale=3.0)
    assert parse_drift("V4:scale=2,shift=-1") == Drift("V4", shift=-1.0, scale=2.0)
    for bad in ("V14", "V14:shift", "V14:tilt=2", "V14:shift=abc", ":shift=1", "V14:scale=inf"):
        with pytest.raises(ValueError, match="--drift"):
            parse_drift(bad)


def _p1(stub, data: bytes) -> np.ndarray:
    resp = stub.ModelInfer(pb.ModelInferRequest.FromString(data), timeout=5)
    i = [o.name for o in resp.outputs].index("probabilities")
    return np.frombuffer(resp.raw_output_contents[i], dtype="<f4").reshape(-1, 2)[:, 1]


def test_drift_changes_the_sent_values_and_the_servers_answers(server, fraud_csv):
    clean = prepare(server.grpc_target, "fraud", data=fraud_csv, rows_per_request=50)
    drifts = [parse_drift("V14:shift=2.5"), parse_drift("Amount:scale=3")]
    drifted = prepare(server.grpc_target, "fraud", data=fraud_csv, rows_per_request=50, drift=drifts)
    assert drifted.drift_pool is None and drifted.drift_dict()["from_s"] == 0.0
    (_, a), (_, b) = decode_request(clean.pool[0]), decode_request(drifted.pool[0])
    x, y = a["input"], b["input"]  # [50, 30]: Time, V1..V28, Amount
    np.testing.assert_allclose(y[:, 14] - x[:, 14], 2.5, atol=1e-4)
    np.testing.assert_allclose(y[:, 29], x[:, 29] * 3, rtol=1e-6)
    untouched = [j for j in range(30) if j not in (14, 29)]
    assert np.array_equal(x[:, untouched], y[:, untouched])
    # the model's logit has -1.4 * V14: shifting V14 up lowers every fraud probability
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        before = np.concatenate([_p1(stub, d) for d in clean.pool])
        after = np.concatenate([_p1(stub, d) for d in drifted.pool])
    assert np.all(after[:50] <= before[:50] + 1e-6) and after.mean() < 0.5 * before.mean()


def test_drift_per_feature_and_later_start(server):
    plan = prepare(
        server.grpc_target, "price", per_feature=True, rows_per_request=4,
        categories={"city": ["paris", "oslo"]}, drift=[parse_drift("area:scale=2")], drift_from_s=5,
    )
    (_, clean), (_, drifted) = decode_request(plan.pool[0]), decode_request(plan.drift_pool[0])
    np.testing.assert_allclose(drifted["area"], clean["area"] * 2, rtol=1e-6)
    assert clean["city"] == drifted["city"]
    with pytest.raises(ValueError, match="categorical"):
        prepare(server.grpc_target, "price", per_feature=True, drift=[parse_drift("city:shift=1")])
    with pytest.raises(ValueError, match="no feature 'nope'"):
        prepare(server.grpc_target, "price", per_feature=True, drift=[parse_drift("nope:shift=1")])


@pytest.mark.timeout(60)
def test_stable_run_writes_json_and_a_self_contained_html_page(server, tmp_path, capsys):
    out, page = tmp_path / "run.json", tmp_path / "run.html"
    code = standalone([
        server.grpc_target, "--model", "fraud", "--concurrency", "2", *SHORT,
        "--stable", "50%", "--max-windows", "3", "--drift", "f14:shift=1", "--drift-from", "1s",
        "--json-out", str(out), "--html", str(page),
    ])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "3 windows" in captured.out
    report = json.loads(out.read_text())
    assert report["drift"] == {"features": [{"feature": "f14", "shift": 1.0, "scale": 1.0}], "from_s": 1.0}
    (result,) = report["results"]
    s = result["stability"]
    assert s["windows"] == 3 and len(s["throughput_rps"]) == 3 and isinstance(s["stabilized"], bool)
    assert result["requests"] > 0 and len(result["timeline"]["t_s"]) == 3  # pooled: 3 windows x 1 s
    text = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing fetched from elsewhere
    assert text.count('src="data:image/png;base64,') == 3
    assert "<table" in text and "c=2" in text and "Drift injected" in text


@pytest.mark.timeout(90)
def test_compare_two_real_servers_prints_ratios_and_writes_both(server, model_repo, tmp_path, capsys):
    root, _ = model_repo
    other = ServerProcess(root, args=["--model-control", "none"], log_path=tmp_path / "b.log").start()
    try:
        out, page = tmp_path / "cmp.json", tmp_path / "cmp.html"
        code = standalone([
            server.grpc_target, "--compare", other.grpc_target, "--model", "fraud",
            "--concurrency", "1,2", *SHORT, "--json-out", str(out), "--html", str(page),
        ])
    finally:
        assert other.stop() == 0, other.log()
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "B/A ratios (throughput, p50, p99):" in captured.out
    assert re.search(r"c=1: \d+\.\d\d, \d+\.\d\d, \d+\.\d\d", captured.out)
    report = json.loads(out.read_text())
    a, b = report["targets"]
    assert (a["target"], b["target"]) == (server.grpc_target, other.grpc_target)
    assert [r["concurrency"] for r in a["results"]] == [1, 2] == [r["concurrency"] for r in b["results"]]
    assert len(report["ratios"]) == 2
    ratio = report["ratios"][0]["throughput_b_over_a"]
    assert ratio == pytest.approx(b["results"][0]["throughput_rps"] / a["results"][0]["throughput_rps"])
    # alternation: A's first window before B's, B's before A's second
    starts = [a["results"][0], b["results"][0], a["results"][1], b["results"][1]]
    assert [r["window_start_s"] for r in starts] == sorted(r["window_start_s"] for r in starts)
    text = page.read_text()
    assert server.grpc_target in text and other.grpc_target in text and "Ratios (B / A)" in text


def _one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.timeout(60)
def test_unknown_model_is_one_line_and_a_failure(server, fraud_csv, capsys):
    assert standalone([server.grpc_target, "--model", "nope", *SHORT]) == 1
    line = _one_line(capsys.readouterr().err)
    assert f"cannot get ModelMetadata of 'nope' from {server.grpc_target}: NOT_FOUND" in line
    # the second target's model
    assert standalone([server.grpc_target, "--compare", server.grpc_target, "--model", "fraud",
                       "--model-b", "nope", *SHORT]) == 1
    assert "'nope'" in _one_line(capsys.readouterr().err)
    # without ModelMetadata the requests themselves fail: the run stops after the first level
    code = standalone([server.grpc_target, "--model", "nope", "--no-metadata", "--data", str(fraud_csv),
                       "--concurrency", "1,2", *SHORT])
    assert code == 1
    line = _one_line(capsys.readouterr().err)
    assert "no request succeeded (NOT_FOUND" in line


@pytest.mark.timeout(60)
def test_tls_mismatch_is_one_line(tls_server, capsys):
    assert standalone([tls_server.grpc_target, "--model", "fraud", *SHORT]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "UNAVAILABLE" in line and "does not speak TLS" in line


@pytest.mark.timeout(60)
def test_a_real_server_going_away_keeps_json_and_html(own_server, tmp_path, capsys):
    out, page = tmp_path / "gone.json", tmp_path / "gone.html"

    def stop_in_second_window() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if json.loads(out.read_text())["results"]:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        time.sleep(0.8)
        own_server.proc.kill()  # gone, not drained

    threading.Thread(target=stop_in_second_window, daemon=True).start()
    code = standalone([own_server.grpc_target, "--model", "fraud", "--concurrency", "2,4", *SHORT,
                       "--json-out", str(out), "--html", str(page)])
    captured = capsys.readouterr()
    assert code == 1
    line = _one_line(captured.err)
    assert "stopped early" in line and "server unavailable" in line and str(page) in line
    report = json.loads(out.read_text())
    assert report["results"][0]["aborted"] is None and report["results"][1]["aborted"]
    assert "The run stopped early" in page.read_text()
