"""The fraud example: the script runs end to end; the notebook is valid nbformat 4 and compiles."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fraud"


@pytest.mark.timeout(300)
def test_demo_runs_end_to_end(tmp_path):
    work = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE / "demo.py"), "--workdir", str(work)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    for line in ("target Class is BINARY", "chosen for fpr<=0.01", "fraud/1: approved, stages ['production']",
                 "served == offline", "batch == served for the scored rows: True", "server exited with 0"):
        assert line in out, line
    for step in range(1, 15):
        assert f"== {step}. " in out
    assert (work / "evaluation.html").stat().st_size > 10_000
    assert (work / "holdout_scores.parquet").stat().st_size > 0
    assert (work / "models" / "fraud" / "1" / "manifest.json").exists()
    assert (work / "models" / "registry.db").exists()
    assert (work / "trials.json").exists()


def test_notebook_is_nbformat4_and_compiles():
    nb = json.loads((EXAMPLE / "walkthrough.ipynb").read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(code) >= 10
    for cell in nb["cells"]:
        assert cell["cell_type"] in ("code", "markdown") and isinstance(cell["source"], list)
    for cell in code:
        assert cell["outputs"] == [] and cell["execution_count"] is None  # no outputs committed
        compile("".join(cell["source"]), "cell", "exec")


def test_notebook_is_what_make_notebook_writes():
    sys.path.insert(0, str(EXAMPLE))
    try:
        import make_notebook
    finally:
        sys.path.remove(str(EXAMPLE))
    assert json.loads((EXAMPLE / "walkthrough.ipynb").read_text(encoding="utf-8")) == make_notebook.notebook()
