"""The real ``onyxserve`` command in a subprocess, as a user runs it, and what a refusal of a
data file must look like on its stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout whose code is tested


def onyxserve(*args: str | Path) -> subprocess.CompletedProcess:
    """The real command, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "onyxserve", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,  # sys.path[0] is the cwd for -m: this checkout, not another installed copy
        timeout=300,
    )


def assert_one_line_refusal(done: subprocess.CompletedProcess, *parts: str) -> str:
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]
