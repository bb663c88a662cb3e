"""The registry: real SQLite, real exported versions, several processes writing at once, a
writer killed mid-transaction."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
from onyxserve.repository.registry import Registry, RegistryError, register_version
from onyxserve.repository.store import list_versions
from onyxserve.training.export.writer import export_model
from sklearn.linear_model import LogisticRegression

from onyxserve.cli import main


def _export(repo, n: int) -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
    y = (X["a"] + rng.normal(scale=0.5, size=200) > 0).astype(int)
    for i in range(n):
        est = LogisticRegression(C=0.1 * (i + 1)).fit(X, y)
        export_model(est, name="churn", repository=repo, sample=X.iloc[:50], metrics={"auc": 0.8 + i / 100},
                     register=False)  # the tests below index them explicitly


@pytest.fixture
def repo(tmp_path_factory, tmp_path):
    base = tmp_path_factory.getbasetemp() / "registry-template"
    if not base.exists():
        _export(base, 4)
    import shutil

    dest = tmp_path / "models"
    shutil.copytree(base, dest)
    return dest


def test_register_sync_list_show(repo):
    rec = register_version(repo, "churn", "1", actor="alice")
    assert (rec.version, rec.task, rec.approval, rec.metrics["auc"]) == ("1", "binary", "pending", 0.8)
    assert (repo / "registry.db").is_file()
    reg = Registry(repo)
    assert reg.register_version("churn", 1).manifest_sha256 == rec.manifest_sha256  # idempotent
    report = reg.sync(actor="bob")
    assert report.added == (("churn", "2"), ("churn", "3"), ("churn", "4")) and report.forgotten == ()
    assert [m["versions"] for m in reg.list_models()] == [4]
    assert [v.version for v in reg.list_versions("churn")] == ["1", "2", "3", "4"]
    assert [h.action for h in reg.history("churn")][-1] == "register"
    assert reg.history("churn")[-1].actor == "alice"
    with pytest.raises(RegistryError, match="churn/9 is not registered"):
        reg.get_version("churn", 9)
    with pytest.raises(RegistryError, match="missing; export the version first"):
        reg.register_version("churn", 9)
    # a version's files changed under a registered number are refused
    manifest = repo / "churn" / "2" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"created_at"', '"created_at" ', 1))
    with pytest.raises(RegistryError, match="immutable"):
        reg.register_version("churn", 2)
    assert reg.check() == "ok"


def test_promote_approve_rollback_delete(repo):
    reg = Registry(repo)
    reg.sync()
    with pytest.raises(RegistryError, match="pending; approve it before production"):
        reg.promote("churn", 1, "production")
    for v in (1, 2, 3):
        reg.approve("churn", v, actor="carol", note="looked at the report")
    assert reg.promote("churn", 1, "production") is None
    assert reg.promote("churn", 2, "production") == "1"
    assert reg.promote("churn", 3, "production") == "2"
    reg.promote("churn", 4, "staging")  # staging needs no approval
    reg.promote("churn", 2, "shadow")
    assert reg.aliases("churn") == {"production": "3", "staging": "4", "shadow": "2"}
    reg.approve("churn", 4, reject=True)
    with pytest.raises(RegistryError, match="rejected; it can only be archived"):
        reg.promote("churn", 4, "production")
    assert reg.rollback("churn", actor="dave") == ("3", "2")
    assert reg.rollback("churn") == ("2", "1")  # again: further back, not forth
    with pytest.raises(RegistryError, match="no earlier production version"):
        reg.rollback("churn")
    reg.promote("churn", 3, "production")
    reg.promote("churn", 2, "production")
    # deleting a version drops it from the rollback path
    with pytest.raises(RegistryError, match="production version; promote another first"):
        reg.delete("churn", 2)
    reg.delete("churn", 3)
    assert list_versions(repo / "churn") == ["1", "2", "4"]
    assert not any((repo / ".trash").iterdir())
    assert reg.rollback("churn") == ("2", "1")
    reg.delete("churn", 1, force=True)
    assert "production" not in reg.aliases("churn")
    actions = [(h.action, h.version, h.stage, h.previous) for h in reg.history("churn", limit=6)]
    assert actions[0] == ("delete", "1", None, None) and ("rollback", "1", "production", "2") in actions
    assert reg.history("churn", limit=100)[-5].actor == "carol"  # the first approval
    cmp = reg.compare("churn", ["2", "4"])
    assert cmp["metrics"]["auc"] == pytest.approx([0.81, 0.83]) and cmp["approval"] == [
        "approved",
        "rejected",
    ]


def test_sync_forgets_versions_whose_files_are_gone(repo):
    reg = Registry(repo)
    reg.sync()
    reg.promote("churn", 4, "staging")
    os.rename(repo / "churn" / "4", repo / "churn" / ".gone")
    report = reg.sync()
    assert report.forgotten == (("churn", "4"),) and reg.aliases("churn") == {}


def test_cli(repo, capsys):
    r = ["--repository", str(repo)]
    assert main(["registry", "sync", *r]) == 0
    assert main(["registry", "approve", "churn", "2", *r, "--actor", "erin"]) == 0
    assert main(["registry", "promote", "churn", "2", *r]) == 0
    assert main(["registry", "promote", "churn", "3", *r]) == 1
    assert "pending; approve it" in capsys.readouterr().err
    assert main(["registry", "promote", "churn", "3", "--force", *r]) == 0
    assert main(["registry", "rollback", "churn", *r]) == 0
    capsys.readouterr()
    assert main(["registry", "list", "churn", "--json", *r]) == 0
    versions = json.loads(capsys.readouterr().out)
    assert [v["stages"] for v in versions][1:3] == [["production"], []]
    assert main(["registry", "compare", "churn", "1", "2", *r]) == 0
    assert "auc" in capsys.readouterr().out
    assert main(["registry", "show", "churn", *r]) == 0
    out = capsys.readouterr().out
    assert "rollback" in out and "erin" in out
    assert main(["registry", "delete", "churn", "2", *r]) == 1
    assert main(["registry", "delete", "churn", "2", "--force", *r]) == 0


_WRITER = textwrap.dedent(
    """
    import sys
    from onyxserve.repository.registry import Registry
    repo, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    reg = Registry(repo, timeout_s=60)
    for i in range(n):
        v = 1 + (i % 4)
        if i % 3 == 0:
            reg.approve("churn", v, actor=who)
        else:
            reg.promote("churn", v, "staging" if i % 2 else "archived", actor=who)
    """
)


def test_concurrent_writers_never_corrupt(repo):
    reg = Registry(repo)
    reg.sync()
    before = len(reg.history(limit=10_000))
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(repo), f"w{k}", "30"], stderr=subprocess.PIPE)
        for k in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    history = reg.history(limit=10_000)
    assert reg.check() == "ok"
    # every write landed once; promotions to the stage already held are no-ops, not lost writes
    writes = [h for h in history[: len(history) - before]]
    assert {h.actor for h in writes} == {"w0", "w1", "w2", "w3"}
    assert sum(h.action == "approve" for h in writes) == 4 * 10
    assert set(reg.aliases("churn")) == {"staging", "archived"}
    ids = [h.id for h in history]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)


_CRASHER = textwrap.dedent(
    """
    import sys, time
    from onyxserve.repository.registry import Registry, _log
    reg = Registry(sys.argv[1])
    with reg._write() as db:
        db.execute("UPDATE aliases SET version = 1 WHERE model = 'churn' AND stage = 'production'")
        db.execute("DELETE FROM versions WHERE model = 'churn' AND version = 4")
        _log(db, "crasher", "promote", "churn", 1, stage="production")
        print("in transaction", flush=True)
        time.sleep(60)
    """
)


def test_writer_killed_mid_transaction_leaves_previous_state(repo):
    reg = Registry(repo, timeout_s=10)
    reg.sync()
    reg.approve("churn", 2)
    reg.promote("churn", 2, "production")
    snapshot = (
        reg.aliases("churn"),
        [v.to_dict() for v in reg.list_versions("churn")],
        reg.history(limit=100),
    )
    proc = subprocess.Popen([sys.executable, "-c", _CRASHER, str(repo)], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"in transaction"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    after = Registry(repo, timeout_s=10)
    assert after.check() == "ok"
    assert (
        after.aliases("churn"),
        [v.to_dict() for v in after.list_versions("churn")],
        after.history(limit=100),
    ) == snapshot
    started = time.monotonic()
    after.promote("churn", 3, "staging")  # the dead writer's lock is gone
    assert time.monotonic() - started < 5


def test_export_registers_the_version(tmp_path):
    from onyxserve.repository.registry import Registry
    from onyxserve.training.export.writer import export_model
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    result = export_model(model, name="auto", repository=tmp_path, sample=X[:50])
    record = Registry(tmp_path).get_version("auto", result.version)
    assert str(record.version) == result.version and record.task == "binary"


def test_clear_stage_ends_a_shadow_and_guards_production(repo):
    reg = Registry(repo)
    reg.sync()
    for v in ("1", "2"):
        reg.approve("churn", v)
    reg.promote("churn", "1", "production")
    reg.promote("churn", "2", "shadow")
    assert reg.clear_stage("churn", "shadow", actor="bob") == "2"
    assert reg.aliases("churn") == {"production": "1"}
    assert reg.clear_stage("churn", "shadow") is None  # already clear: nothing to do
    with pytest.raises(RegistryError, match="use --force"):
        reg.clear_stage("churn", "production")
    assert reg.clear_stage("churn", "production", force=True) == "1" and reg.aliases("churn") == {}
    assert [h.action for h in reg.history("churn", limit=2)] == ["clear", "clear"]
    with pytest.raises(RegistryError, match="not registered"):
        reg.clear_stage("ghost", "shadow")
