"""Finding debuginfo: build-id tree, release paths, modules by name, explicit paths, debuginfod
(a local HTTP server), and refusing files of another build with a warning."""

from __future__ import annotations

import http.server
import logging
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from analysis.errors import DebuginfoError
from analysis.symbolize.debuginfo import DebuginfoSearch, debuginfod_fetch, module_key
from analysis.symbolize.elfinfo import read_build_id

PROG = Path(__file__).resolve().parents[1] / "data" / "symbolize" / "prog"
RELEASE = "6.1.0-99-amd64"


def _run(*cmd: str) -> None:
    if shutil.which(cmd[0]) is None:
        pytest.skip(f"{cmd[0]} is not installed")
    subprocess.run(cmd, check=True, timeout=120)


@pytest.fixture(scope="module")
def elves(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two executables of different builds and a module-like relocatable object with .modinfo."""
    root = tmp_path_factory.mktemp("elves")
    _run("gcc", "-g", "-O2", "-Wl,--build-id=sha1", "-o", str(root / "kernel"), str(PROG / "main.c"), str(PROG / "walk.c"))
    _run("gcc", "-g", "-O1", "-Wl,--build-id=sha1", "-o", str(root / "other"), str(PROG / "main.c"), str(PROG / "walk.c"))
    _run("gcc", "-g", "-O2", "-c", "-o", str(root / "fakemod.o"), str(PROG / "fakemod.c"))
    _run("ld", "-r", "--build-id=sha1", "-o", str(root / "demo-mod.ko"), str(root / "fakemod.o"))
    return {"kernel": root / "kernel", "other": root / "other", "module": root / "demo-mod.ko"}


def _place(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dest)
    return dest


def _id(path: Path) -> str:
    value = read_build_id(str(path))
    assert value is not None
    return value


def test_build_id_tree_is_found_by_build_id(elves: dict[str, Path], tmp_path: Path) -> None:
    bid = _id(elves["kernel"])
    placed = _place(elves["kernel"], tmp_path / ".build-id" / bid[:2] / f"{bid[2:]}.debug")
    found = DebuginfoSearch(debug_roots=[str(tmp_path)]).find_vmlinux(bid, None)
    assert found is not None and found.path == str(placed) and found.origin == "build-id"
    assert found.build_id == bid


def test_release_path_is_used_only_when_build_id_matches(
    elves: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _place(elves["other"], tmp_path / "boot" / f"vmlinux-{RELEASE}")
    search = DebuginfoSearch(debug_roots=[str(tmp_path)])
    with caplog.at_level(logging.WARNING):
        assert search.find_vmlinux(_id(elves["kernel"]), RELEASE) is None
    assert "build-id mismatch" in caplog.text and _id(elves["other"]) in caplog.text
    # Without a recorded build-id (a plain log) the release path is taken.
    found = search.find_vmlinux(None, RELEASE)
    assert found is not None and found.origin == "release"


def test_explicit_file_and_directory_win_over_system_roots(elves: dict[str, Path], tmp_path: Path) -> None:
    bid = _id(elves["kernel"])
    system = tmp_path / "system"
    _place(elves["kernel"], system / ".build-id" / bid[:2] / f"{bid[2:]}.debug")
    mine = _place(elves["kernel"], tmp_path / "mine" / "vmlinux")
    assert DebuginfoSearch(explicit=[str(mine)], debug_roots=[str(system)]).find_vmlinux(bid, None) == (
        DebuginfoSearch(explicit=[str(tmp_path / "mine")], debug_roots=[str(system)]).find_vmlinux(bid, None)
    )
    found = DebuginfoSearch(explicit=[str(tmp_path / "mine")], debug_roots=[str(system)]).find_vmlinux(bid, None)
    assert found is not None and found.path == str(mine) and found.origin == "explicit"


def test_missing_explicit_path_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert DebuginfoSearch(explicit=[str(tmp_path / "nope")], debug_roots=[]).find_vmlinux(None, "x") is None
    assert "does not exist" in caplog.text


def test_garbage_candidate_is_skipped_with_reason(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    junk = tmp_path / "boot" / f"vmlinux-{RELEASE}"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"\x7fELF" + b"\xff" * 60)
    with caplog.at_level(logging.WARNING):
        assert DebuginfoSearch(debug_roots=[str(tmp_path)]).find_vmlinux(None, RELEASE) is None
    assert "unreadable" in caplog.text


def test_module_by_name_and_release(elves: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    placed = _place(elves["module"], tmp_path / "lib" / "modules" / RELEASE / "extra" / "demo-mod.ko")
    search = DebuginfoSearch(debug_roots=[str(tmp_path)])
    found = search.find_module("demo_mod", RELEASE)
    assert found is not None and found.path == str(placed) and found.origin == "release"
    assert search.find_module("other_mod", RELEASE) is None
    # The same file placed under another release's tree is refused by its vermagic.
    _place(elves["module"], tmp_path / "lib" / "modules" / "5.10.0-1-amd64" / "demo-mod.ko")
    with caplog.at_level(logging.WARNING):
        assert search.find_module("demo_mod", "5.10.0-1-amd64") is None
    assert "release mismatch" in caplog.text
    assert module_key("demo-mod") == module_key("demo_mod")


def test_explicit_module_directory(elves: dict[str, Path], tmp_path: Path) -> None:
    placed = _place(elves["module"], tmp_path / "mods" / "demo-mod.ko")
    found = DebuginfoSearch(explicit=[str(tmp_path / "mods")], debug_roots=[]).find_module("demo_mod", RELEASE)
    assert found is not None and found.path == str(placed)


class _Debuginfod(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        parts = self.path.strip("/").split("/")
        body = self.files.get(parts[1]) if len(parts) == 3 and parts[0] == "buildid" and parts[2] == "debuginfo" else None
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def debuginfod(elves: dict[str, Path]) -> Iterator[tuple[str, type[_Debuginfod]]]:
    handler = type("Handler", (_Debuginfod,), {"files": {}, "hits": []})
    handler.files[_id(elves["kernel"])] = elves["kernel"].read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_debuginfod_download_is_cached(
    elves: dict[str, Path], tmp_path: Path, debuginfod: tuple[str, type[_Debuginfod]]
) -> None:
    url, handler = debuginfod
    bid = _id(elves["kernel"])
    search = DebuginfoSearch(debug_roots=[], debuginfod_urls=[url], debuginfod_cache=tmp_path, timeout=5)
    found = search.find_vmlinux(bid, None)
    assert found is not None and found.origin == "debuginfod" and found.build_id == bid
    assert Path(found.path).read_bytes() == elves["kernel"].read_bytes()
    assert search.find_vmlinux(bid, None) is not None
    assert handler.hits == [f"/buildid/{bid}/debuginfo"]  # the second time came from the cache


def test_debuginfod_miss_and_unreachable(tmp_path: Path, debuginfod: tuple[str, type[_Debuginfod]]) -> None:
    url, _handler = debuginfod
    assert debuginfod_fetch([url], "ab" * 20, tmp_path, timeout=5) is None
    assert debuginfod_fetch(["http://127.0.0.1:9"], "ab" * 20, tmp_path, timeout=2) is None
    assert debuginfod_fetch(["file:///etc"], "ab" * 20, tmp_path, timeout=2) is None
    with pytest.raises(DebuginfoError, match="not a build-id"):
        debuginfod_fetch([url], "../../etc/passwd", tmp_path)


def test_debuginfod_serving_the_wrong_build_is_refused(
    elves: dict[str, Path], tmp_path: Path, debuginfod: tuple[str, type[_Debuginfod]], caplog: pytest.LogCaptureFixture
) -> None:
    url, handler = debuginfod
    wrong = "cd" * 20
    handler.files[wrong] = elves["other"].read_bytes()
    search = DebuginfoSearch(debug_roots=[], debuginfod_urls=[url], debuginfod_cache=tmp_path, timeout=5)
    with caplog.at_level(logging.WARNING):
        assert search.find_vmlinux(wrong, None) is None
    assert "build-id mismatch" in caplog.text
