"""Generate the Python code of the crashfleet.v1 API into wire/v1, the one way `make proto` and the
freshness test both use.

The .proto files keep buf's layout (package crashfleet.v1 under proto/crashfleet/v1), so the wire
names and descriptor file names never change; only the Python home of the generated modules is
`wire.v1`, below both daemons. protoc writes imports after the proto path (`from crashfleet.v1
import ...`), so the one rewrite here points them at `wire.v1`.

Usage: python proto/generate.py OUT_DIR   (OUT_DIR/wire/v1 receives the modules)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
PROTO_PACKAGE_DIR = Path("crashfleet") / "v1"
PYTHON_PACKAGE_DIR = Path("wire") / "v1"
IMPORT = re.compile(rb"^(from|import) crashfleet\.v1\b", re.MULTILINE)


def generate(out: Path) -> list[Path]:
    """Run protoc with the installed (locked) grpcio-tools; returns the files written under out."""
    bindir = Path(sys.executable).parent
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / PROTO_PACKAGE_DIR).glob("*.proto"))
    if not protos:
        raise SystemExit(f"{PROTO_DIR / PROTO_PACKAGE_DIR}: no .proto files")
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={tmp}",
             f"--grpc_python_out={tmp}", f"--mypy_out={tmp}", f"--mypy_grpc_out={tmp}", *protos],
            check=True, cwd=PROTO_DIR, env=env,
        )  # fmt: skip
        target = out / PYTHON_PACKAGE_DIR
        target.mkdir(parents=True, exist_ok=True)
        written = []
        for src in sorted((Path(tmp) / PROTO_PACKAGE_DIR).iterdir()):
            data = IMPORT.sub(rb"\1 wire.v1", src.read_bytes())
            dst = target / src.name
            dst.write_bytes(data)
            written.append(dst)
    return written


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python proto/generate.py OUT_DIR")
    for path in generate(Path(sys.argv[1])):
        print(path)


if __name__ == "__main__":
    main()
