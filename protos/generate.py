"""Regenerate the committed Python code for protos/*.proto.

Run ``python protos/generate.py`` after editing a .proto; ``--check`` regenerates into a
temporary folder and fails when the committed files differ (CI runs it). The generator is
pinned (grpcio-tools, see pyproject's ``dev`` extra) so output is stable.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

PROTO_DIR = Path(__file__).resolve().parent
PROTOS = sorted(p.name for p in PROTO_DIR.glob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *PROTOS,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written = sorted(out_dir.glob("*_pb2*.py*"))
    for path in written:
        # protoc writes flat imports; the package is onyxserve.protos.
        text = re.sub(r"^import (\w+_pb2) as", r"from . import \1 as", path.read_text(), flags=re.M)
        # Register in onyxserve's own descriptor pool, not the process-wide default: Triton's
        # client registers the same `inference.*` names there, and both must import together.
        text = text.replace(
            "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(",
            "from ._pool import POOL\nDESCRIPTOR = POOL.AddSerializedFile(",
        )
        path.write_text(text)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed code is stale")
    check = parser.parse_args().check
    if not check:
        for path in generate(PROTO_DIR):
            print(f"wrote {path.relative_to(PROTO_DIR.parent)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        stale = [p.name for p in generate(Path(tmp)) if not filecmp.cmp(p, PROTO_DIR / p.name, shallow=False)]
    if stale:
        print("stale generated code, run python protos/generate.py:", ", ".join(stale), file=sys.stderr)
        return 1
    print("generated protobuf code is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
