"""The one-release shims of the modules moved into per-concern packages: every old path still
imports, warns naming the new path, and is the very module at the new path."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import warnings

import pytest

from onyxserve._moved import MOVED


def test_old_module_paths_warn_and_are_the_new_modules():
    # a fresh interpreter, where no old name has been imported yet; each warns on first import
    code = (
        "import importlib, json, sys, warnings\n"
        "from onyxserve._moved import MOVED\n"
        "bad = []\n"
        "for old, new in MOVED.items():\n"
        "    with warnings.catch_warnings(record=True) as seen:\n"
        "        warnings.simplefilter('always')\n"
        "        module = importlib.import_module(old)\n"
        "    said = [str(w.message) for w in seen if w.category is DeprecationWarning]\n"
        "    if module is not importlib.import_module(new) or not any(old in m and new in m for m in said):\n"
        "        bad.append((old, new, said))\n"
        "print(json.dumps(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True, text=True)
    assert json.loads(out.stdout) == []
    assert len(MOVED) > 40


def test_every_new_path_exists():
    for new in set(MOVED.values()):
        assert importlib.util.find_spec(new) is not None, new


@pytest.mark.parametrize(
    "package,name,home",
    [
        ("onyxserve.training.datasource", "typed", "onyxserve.training.datasource.record"),
        ("onyxserve.training.export", "DEFAULT_CONFIG", "onyxserve.training.export.writer"),
        ("onyxserve.training.recipe", "MISSING_CATEGORY", "onyxserve.training.recipe.spec"),
        ("onyxserve.server.drift", "psi", "onyxserve.server.drift.report"),
        ("onyxserve.server.shadow", "ShadowMirror", "onyxserve.server.shadow.mirror"),
        # not a package, but its wire codecs moved to the transports
        ("onyxserve.server.tensors", "decode_grpc_inputs", "onyxserve.server.grpc.codec"),
        ("onyxserve.server.tensors", "decode_raw", "onyxserve.server.grpc.codec"),
        ("onyxserve.server.tensors", "tensor_from_json", "onyxserve.server.rest.codec"),
    ],
)
def test_a_package_that_replaced_a_module_answers_its_old_names(package, name, home):
    module = importlib.import_module(package)
    with pytest.warns(DeprecationWarning, match=f"{home}.{name}"):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(home), name)


def test_documented_notebook_names_import_without_warnings():
    import onyxserve.training as training

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in training.__all__:
            assert getattr(training, name) is not None, name
    with pytest.raises(AttributeError):
        training.no_such_name  # noqa: B018
