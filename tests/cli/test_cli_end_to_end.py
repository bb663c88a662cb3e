"""The commands as a user runs them, on real files, a real registry (SQLite) and a real server:
``--json`` prints one valid JSON document on stdout, the deprecated spellings still do their
job (and say so on stderr), and every refusal is one stderr line with its exit code, never a
traceback."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass

import pandas as pd
import pytest
from onyxserve.training.synthetic import fraud_transactions

from onyxserve.cli import main
from tests.serving import ServerProcess, free_port

LOADTEST_SHORT = ["--concurrency", "1", "--warmup", "200ms", "--duration", "1s", "--processes", "1",
                  "--connections", "1"]
SPACE = {"alpha": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True}}


@dataclass
class Done:
    code: int
    out: str
    err: str

    def json(self):
        assert self.code == 0, self.err
        return json.loads(self.out)  # the whole of stdout: one document, nothing else


def cli(*args: object) -> Done:
    """``onyxserve ARGS`` in this process (stdout and stderr captured)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return Done(code, out.getvalue(), err.getvalue())


def cli_process(*args: object, timeout: float = 120) -> Done:
    """``python -m onyxserve ARGS``: a traceback would show in stderr here."""
    done = subprocess.run([sys.executable, "-m", "onyxserve", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, check=False)
    return Done(done.returncode, done.stdout, done.stderr)


def deprecation_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "DeprecationWarning" in line]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A datasource, a trained (v1) and a tuned (v2) fraud model, a registry database of its own
    (v1 production, v2 shadow) and a server reading its stages from that database."""
    root = tmp_path_factory.mktemp("cli")
    fraud_transactions(rows=1500).to_csv(root / "fraud.csv", index=False)
    (root / "space.json").write_text(json.dumps(SPACE))
    repo, reg_db, record = root / "models", root / "stages.db", root / "fraud.datasource.json"
    steps = {
        "create": cli("datasource", "create", root / "fraud.csv", "--target", "Class", "--out", record, "--json"),
        "show": cli("datasource", "show", record, "--json"),
        "train": cli("train", record, "--algorithm", "linear", "--params", '{"max_passes": 4}', "--no-progress",
                     "--export", "--name", "fraud", "--repository", repo, "--json"),
        # the deprecated --timeout of tune: a time budget
        "tune": cli("tune", record, "--algorithm", "linear", "--space", root / "space.json", "--trials", "2",
                    "--timeout", "60", "--no-progress", "--export", "--name", "fraud", "--repository", repo,
                    "--json"),
        # the deprecated --db, then --registry-db: the same file
        "sync": cli("registry", "sync", "--repository", repo, "--db", reg_db, "--json"),
    }
    for version in ("1", "2"):
        assert cli("registry", "approve", "fraud", version, "--repository", repo, "--registry-db", reg_db).code == 0
    assert cli("registry", "promote", "fraud", "1", "--repository", repo, "--registry-db", reg_db).code == 0
    steps["promote"] = cli("registry", "promote", "fraud", "2", "--stage", "shadow", "--repository", repo,
                           "--registry-db", reg_db, "--json")
    server = ServerProcess(repo, args=["--registry-db", str(reg_db)]).start()
    try:
        yield {"root": root, "repo": repo, "reg_db": reg_db, "record": record, "steps": steps, "server": server}
    finally:
        assert server.stop() == 0, server.log()


def test_datasource_train_and_tune_print_json(work):
    steps = work["steps"]
    created, shown = steps["create"].json(), steps["show"].json()
    assert created["rowCount"] == shown["rowCount"] == 1500 and created["name"] == shown["name"]
    assert steps["train"].json()["exported"]["version"] == "1"
    tuned = steps["tune"].json()
    assert tuned["trials"] == 2 and tuned["exported"]["version"] == "2"
    (line,) = deprecation_lines(steps["tune"].err)
    assert "--timeout is deprecated, use --time-budget" in line


def test_registry_json_and_the_deprecated_db_are_the_same_file(work):
    repo, reg_db = work["repo"], work["reg_db"]
    synced = work["steps"]["sync"]
    assert sorted(map(tuple, synced.json()["added"])) == [("fraud", "1"), ("fraud", "2")]
    (line,) = deprecation_lines(synced.err)
    assert "--db is deprecated, use --registry-db" in line
    assert work["steps"]["promote"].json() == {"model": "fraud", "stage": "shadow", "version": "2", "previous": None}
    shown = cli("registry", "show", "fraud", "--repository", repo, "--registry-db", reg_db, "--json").json()
    assert shown["stages"] == {"production": "1", "shadow": "2"}
    assert cli("registry", "show", "fraud", "--repository", repo, "--db", reg_db, "--json").json() == shown
    with contextlib.closing(sqlite3.connect(reg_db)) as db:
        assert dict(db.execute("SELECT stage, version FROM aliases WHERE model = 'fraud'")) == {
            "production": 1, "shadow": 2}
    listed = cli("registry", "list", "fraud", "--repository", repo, "--registry-db", reg_db, "--json").json()
    assert [r["version"] for r in listed] == ["1", "2"]
    compared = cli("registry", "compare", "fraud", "1", "2", "--repository", repo, "--registry-db", reg_db,
                   "--json").json()
    assert compared["versions"] == ["1", "2"]


def test_evaluate_prints_json(work):
    result = cli("evaluate", work["repo"] / "fraud" / "1", work["root"] / "fraud.csv", "--target", "Class",
                 "--no-save", "--json").json()
    assert result["rows"] == 1500 and 0.5 < result["metrics"]["auc"] <= 1


def test_batch_predict_deprecated_workers_still_scores(work, tmp_path):
    out = tmp_path / "scores.csv"
    done = cli("batch-predict", work["repo"] / "fraud" / "1", work["root"] / "fraud.csv", "--out", out,
               "--workers", "3", "--no-progress")
    assert done.code == 0, done.err
    (line,) = deprecation_lines(done.err)
    assert "--workers is deprecated, use --dask-workers" in line
    assert len(pd.read_csv(out)) == 1500


def test_shadow_report_prints_json(work):
    report = cli("shadow-report", "fraud", "--url", work["server"].http_url, "--timeout", "10", "--json").json()
    # the server found the stages in the database `registry --db`/`--registry-db` wrote
    assert (report["production_version"], report["shadow_version"]) == ("1", "2")


def test_drift_report_json_json_out_and_the_deprecated_json_path(work, tmp_path):
    url = work["server"].http_url
    report = cli("drift-report", "fraud", "--url", url, "--timeout", "10", "--json").json()
    assert report["model"] == "fraud" and report["version"] == "1"

    out = tmp_path / "drift.json"
    done = cli("drift-report", "fraud", "--url", url, "--json-out", out)
    assert done.code == 0 and done.err == "" and "fraud version 1" in done.out
    assert json.loads(out.read_text())["model"] == "fraud"

    old = tmp_path / "old.json"
    done = cli("drift-report", "--json", old, "fraud", "--url", url)
    assert done.code == 0 and "fraud version 1" in done.out  # the text summary, as before
    assert json.loads(old.read_text())["model"] == "fraud"
    (line,) = deprecation_lines(done.err)
    assert "--json PATH is deprecated, use --json-out PATH" in line


def test_loadtest_json_prints_the_report_and_the_old_flags_still_work(work, tmp_path):
    target = work["server"].grpc_target
    done = cli("loadtest", target, "--model", "fraud", *LOADTEST_SHORT, "--json")
    report = done.json()
    assert report["model"] == "fraud" and report["results"][0]["requests"] > 0
    assert "concurrency 1:" in done.err  # the progress lines moved to stderr

    old = tmp_path / "old.json"
    done = cli("loadtest", target, "--model", "fraud", *LOADTEST_SHORT, "--timeout", "3s", "--json", old)
    assert done.code == 0, done.err
    assert "concurrency 1:" in done.out and f"results written to {old}" in done.out
    assert json.loads(old.read_text())["config"]["timeout_s"] == 3.0
    lines = deprecation_lines(done.err)
    assert len(lines) == 2
    assert any("--timeout is deprecated, use --deadline" in line for line in lines)
    assert any("--json PATH is deprecated, use --json-out PATH" in line for line in lines)


def _refusals(work) -> list[tuple[list[object], int, str]]:
    root, repo, reg_db = work["root"], work["repo"], work["reg_db"]
    dead = f"http://127.0.0.1:{free_port()}"
    return [
        # LifecycleError (DatasourceError, EvaluationError): 1
        (["datasource", "show", root / "missing.datasource.json"], 1, "onyxserve datasource: "),
        (["evaluate", repo / "fraud" / "1", root / "fraud.csv", "--target", "Nope", "--no-save"], 1,
         "missing column(s) 'Nope'"),
        # ManifestError / RegistryError (repository errors): 1
        (["evaluate", repo / "fraud" / "99", root / "fraud.csv", "--target", "Class"], 1, "manifest.json"),
        (["registry", "promote", "fraud", "9", "--repository", repo, "--registry-db", reg_db], 1,
         "fraud/9 is not registered"),
        # the server's refusal and an unreachable server: 1
        (["drift-report", "nope", "--url", work["server"].http_url], 1, "HTTP 404"),
        (["shadow-report", "fraud", "--url", dead, "--timeout", "5"], 1, "cannot reach"),
        # UsageError and TrainingError: 2
        (["datasource", "create", root / "fraud.csv", "--chunk-rows", "0"], 2, "--chunk-rows must be at least 1"),
        (["train", work["record"], "--algorithm", "linear", "--export"], 2, "--export needs --name"),
        (["train", work["record"], "--algorithm", "boost"], 2, "key 'algorithm'"),
    ]


def test_every_refusal_is_one_line_and_its_exit_code(work):
    for argv, code, text in _refusals(work):
        done = cli_process(*argv)
        assert done.code == code, (argv, done.err)
        assert "Traceback" not in done.err, done.err
        (line,) = done.err.splitlines()
        assert line.startswith(f"onyxserve {argv[0]}: ") and text in line, (argv, line)


@pytest.mark.timeout(60)
def test_ctrl_c_exits_130_without_a_traceback():
    # a server that accepts the connection and never answers: drift-report waits in urlopen
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "onyxserve", "drift-report", "fraud", "--url", f"http://127.0.0.1:{port}",
             "--timeout", "50"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        listener.settimeout(30)
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)  # the request arrived: the command is waiting for the answer
            time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and out == ""
