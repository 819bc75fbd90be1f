"""`crashfleet demo`: the drop plan, the distribution layouts it writes (checked against the
agent's own layout table), the log variation it relies on, and the real thing end to end."""

from __future__ import annotations

import argparse
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from crashfleet.commands import demo
from tests.conftest import REPO, SHARED

FIXTURE_NAMES = {"e1000e-null-deref", "ext4-kernel-bug", "nf-tables-warning", "xfs-soft-lockup"}


def _fixture_samples() -> list[demo.CrashSample]:
    return demo.load_samples(None)


def _host(tmp_path: Path, layout: str) -> demo.Host:
    host = demo.Host("buildtest01", layout, tmp_path / "crash", tmp_path / "pstore", tmp_path / "state")
    for d in (host.crash_dir, host.pstore_dir, host.state_dir):
        d.mkdir(parents=True)
    return host


def test_fixtures_are_the_fallback() -> None:
    samples = _fixture_samples()
    assert {s.name for s in samples} == FIXTURE_NAMES
    assert all(s.varies and s.dump is None for s in samples)


def test_fake_shared_tree_supplies_dumps_and_seed(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("shared\n")
    for _name, log_rel, dump_rel, _layout in demo.SHARED_CRASHES[:2]:
        (tmp_path / log_rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / log_rel).write_bytes(b"[    1.000000] BUG: something\n")
        (tmp_path / dump_rel).write_bytes(b"KDUMP   ")
    (tmp_path / demo.SEED[1]).parent.mkdir(parents=True)
    (tmp_path / demo.SEED[1]).write_bytes(
        b"BUG: unable to handle kernel NULL pointer dereference at 0000000000000060\n"
    )
    samples = demo.load_samples(tmp_path)
    by_name = {s.name: s for s in samples}
    assert by_name["null-deref"].dump == tmp_path / demo.SHARED_CRASHES[0][2]
    assert by_name["null-deref"].dump_layout == "rhel", "LZO pages are RHEL's default"
    assert "warning" not in by_name, "a crash type whose files are absent is left out"
    seed = by_name[demo.SEED[0]]
    assert seed.only_host == demo.SEED_HOST and not seed.varies, "a log without timestamps cannot be varied"
    assert set(by_name) >= FIXTURE_NAMES


def test_no_crash_data_is_a_plain_error(tmp_path: Path) -> None:
    with pytest.raises(demo.DemoError, match="no crash data"):
        demo.load_samples(tmp_path / "absent", fixtures=tmp_path / "empty")


def test_vary_log_shifts_timestamps_only() -> None:
    text = b"[    4.356486] BUG: x\n[ 8312.402117]  e1000e_poll+0xbc/0x2f0\nno stamp here\n"
    assert demo.vary_log(text, 0) == text
    varied = demo.vary_log(text, 2)
    assert varied != text
    assert varied.splitlines()[2] == b"no stamp here"
    assert re.sub(rb"^\[[ \d.]+\]", b"", varied, flags=re.M) == re.sub(
        rb"^\[[ \d.]+\]", b"", text, flags=re.M
    )
    assert varied.startswith(b"[ 7204.358960] ")  # 4.356486 s + 2 h + 2474 us


def test_varied_copies_keep_the_fingerprint() -> None:
    """The demo counts occurrences of one bug by varying timestamps: the analyzer must agree."""
    from analysis.signature import analyze

    for sample in _fixture_samples():
        (original,) = analyze(sample.log)
        (copy,) = analyze(demo.vary_log(sample.log, 7))
        assert original.fingerprint is not None
        assert copy.fingerprint == original.fingerprint, sample.name


@pytest.mark.parametrize("hosts", [1, 2, 5, 7, 10, 16])
def test_host_walk_visits_every_host_once(hosts: int) -> None:
    walk = demo.host_walk(hosts)
    assert sorted(walk) == list(range(1, hosts + 1))
    if hosts >= 5:
        assert walk[1] - walk[0] != 1, "the walk jumps across the fleet"


@pytest.mark.parametrize("hosts", [1, 5, 7, 10, 16])
def test_plan_drops(hosts: int, tmp_path: Path) -> None:
    dumps = [tmp_path / f"vmcore{i}" for i in range(3)]
    samples = [
        demo.CrashSample("a", b"[ 1.000000] a\n", dumps[0], dump_layout="rhel"),
        demo.CrashSample("b", b"[ 1.000000] b\n", dumps[1], dump_layout="debian"),
        demo.CrashSample("c", b"[ 1.000000] c\n", dumps[2], dump_layout="suse"),
        demo.CrashSample("seed", b"no stamps\n", varies=False, only_host="buildtest07"),
        *_fixture_samples(),
    ]
    drops = demo.plan_drops(samples, hosts, window=12.0)
    assert len(drops) == demo.DROPS_PER_HOST * hosts
    assert drops == demo.plan_drops(samples, hosts, window=12.0), "deterministic"
    assert all(0 <= d.at <= 12.0 for d in drops) and [d.at for d in drops] == sorted(d.at for d in drops)
    assert len({d.seq for d in drops}) == len(drops)
    assert {d.host for d in drops} == set(range(1, hosts + 1)), "every host gets a crash"
    dumped = [d for d in drops if d.with_dump]
    assert len({d.sample.dump for d in dumped}) == len(dumped), "each real dump is used once"
    for d in dumped:
        layout = demo.LAYOUTS[(d.host - 1) % len(demo.LAYOUTS)]
        assert layout in demo.DUMP_LAYOUTS
        if hosts >= len(demo.LAYOUTS):
            assert layout == d.sample.dump_layout, f"{d.sample.name} dump on {layout}"
    if hosts >= len(demo.LAYOUTS):
        assert len(dumped) == len(dumps), "every real dump is used when the fleet has its layout"
    assert sum(1 for d in drops if d.sample.name == "seed") <= 1
    if hosts >= 7:
        assert [d.host for d in drops if d.sample.name == "seed"] == [7]
    if hosts == 16:
        assert {d.sample.name for d in drops} == {s.name for s in samples}
        # The most common bug spreads: it reaches several hosts.
        assert len({d.host for d in drops if d.sample.name == "a"}) >= 3


@pytest.mark.parametrize(
    ("layout", "with_dump"),
    [(layout, False) for layout in demo.LAYOUTS] + [(layout, True) for layout in sorted(demo.DUMP_LAYOUTS)],
)
def test_writers_produce_what_the_agent_recognises(layout: str, with_dump: bool, tmp_path: Path) -> None:
    """Each writer's output is claimed by the agent's row for that layout, and is complete."""
    from datetime import UTC, datetime

    from agent.layouts import CaptureState, Root, assess, discover

    host = _host(tmp_path, layout)
    dump = tmp_path / "vmcore.src"
    dump.write_bytes(b"\0" * 4096)
    path = demo.WRITERS[layout](
        host, datetime(2026, 11, 25, 3, 4, 5, tzinfo=UTC), b"[ 1.0] x\n", dump if with_dump else None
    )
    root = Root.PSTORE if layout in ("systemd-pstore", "ramoops") else Root.CRASH
    directory = host.pstore_dir if root is Root.PSTORE else host.crash_dir
    (found,) = discover(root, directory)
    assert found.path == path
    assert found.rule.name == ("pstore" if layout == "ramoops" else layout)
    state = assess(found)
    assert state.state is CaptureState.COMPLETE, state.reason
    assert bool(state.dumps) == with_dump
    assert state.texts
    assert not [p for p in directory.rglob("*") if "incomplete" in p.name or p.name.startswith(".")]


# Tests run beside other checkouts' tests on one machine: never on the fixed default ports.
FREE_PORTS = ("--grpc-port", "0", "--http-port", "0")


def test_default_ports_are_fixed_and_documented() -> None:
    """The demo's URL is the same every run, and the docs say which it is."""
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    args = parser.parse_args([])
    assert (args.grpc_port, args.http_port) == (demo.DEMO_GRPC_PORT, demo.DEMO_HTTP_PORT) != (0, 0)
    operations = (REPO / "docs" / "operations.md").read_text()
    assert f"http://127.0.0.1:{demo.DEMO_HTTP_PORT}/" in operations
    assert f"127.0.0.1:{demo.DEMO_GRPC_PORT}" in operations and "--http-port" in operations


def test_a_busy_port_is_a_plain_error(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(demo.DemoError, match=rf"127\.0\.0\.1:{port} is in use.*--http-port PORT"):
            demo.start_collector(tmp_path, 0, port, verbose=False)


class _Process:
    """A collector process that runs until `polls` run out, then raises what Ctrl-C raises."""

    def __init__(self, polls: int) -> None:
        self.polls = polls
        self.returncode: int | None = None

    def poll(self) -> int | None:
        self.polls -= 1
        if self.polls < 0:
            raise KeyboardInterrupt
        return None


def _collector(tmp_path: Path, polls: int) -> demo.Collector:
    return demo.Collector(_Process(polls), "127.0.0.1:1", "http://127.0.0.1:2", tmp_path / "log")  # type: ignore[arg-type]


def test_not_on_a_terminal_no_dead_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    collector = _collector(tmp_path, polls=0)
    demo.serve_until_interrupted(collector, interactive=False)
    out = capsys.readouterr().out
    assert "http://" not in out and "stops with the demo" in out


def test_on_a_terminal_the_page_stays_up_until_ctrl_c(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    previous = signal.getsignal(signal.SIGINT)
    try:
        collector = _collector(tmp_path, polls=3)
        demo.serve_until_interrupted(collector, interactive=True, poll=0.01)
    finally:
        signal.signal(signal.SIGINT, previous)
    out = capsys.readouterr().out
    assert "web page: http://127.0.0.1:2/  (the collector keeps serving; Ctrl-C stops it)" in out
    assert collector.process.polls < 0, "it waited until Ctrl-C"  # type: ignore[attr-defined]
    assert out.rstrip().endswith("stopping the collector")


@pytest.mark.slow
def test_on_a_terminal_the_demo_serves_its_page_until_ctrl_c() -> None:
    """End to end under a pseudo-terminal: the URL printed at the end answers, Ctrl-C ends it."""
    import os
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "crashfleet", "demo", "--duration", "6", "--hosts", "2", *FREE_PORTS],
        stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
    )  # fmt: skip
    os.close(follower)
    out = b""
    try:
        deadline = time.monotonic() + 90
        while b"Ctrl-C stops it" not in out and time.monotonic() < deadline and proc.poll() is None:
            try:
                out += os.read(leader, 65536)
            except OSError:
                break
        text = out.decode(errors="replace")
        url = re.search(r"web page: (http://127\.0\.0\.1:\d+/)  \(the collector keeps serving", text)
        assert url, text
        with urllib.request.urlopen(url[1] + "healthz", timeout=10) as response:
            assert response.status == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    assert not _port_open(url[1].removeprefix("http://").rstrip("/")), "the collector was left running"


def _port_open(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, int(port))) == 0


def _summary_numbers(out: str) -> tuple[int, int, int, int]:
    match = re.search(r"(\d+) of (\d+) crashes placed in crash directories, (\d+) stored in (\d+) clusters", out)
    assert match, out
    dropped, planned, stored, clusters = map(int, match.groups())
    return dropped, planned, stored, clusters


@pytest.mark.slow
def test_demo_runs_unattended_and_prints_the_clusters() -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "crashfleet", "demo", "--duration", "20", *FREE_PORTS],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Traceback" not in out + result.stderr
    assert time.monotonic() - started < 60
    dropped, planned, stored, clusters = _summary_numbers(out)
    assert dropped == planned == 2 * demo.MAX_HOSTS
    assert stored == dropped, "every crash dropped reached the collector exactly once"
    for i in range(1, demo.MAX_HOSTS + 1):
        assert f"buildtest{i:02d}" in out
    for layout in demo.LAYOUTS:
        assert f"({layout})" in out
    table = out[out.index("ID ") :]
    assert re.search(r"^ID\s+COUNT\s+HOSTS", table, re.M)
    rows = [line for line in table.splitlines()[1:] if re.match(r"^[0-9a-f]{8,}\s+\d+", line)]
    assert len(rows) == clusters >= len(FIXTURE_NAMES)
    assert sum(int(line.split()[1]) for line in rows) == stored
    if (SHARED / "README.md").is_file():
        assert "vmcore + log (vmcore.kdump-lzo)" in out, "the real dumps of ../shared were used"
        assert "crashme_napi_pending" in table
    # Not on a terminal: the collector stops with the demo, so no URL is printed after the table.
    assert "http://" not in table and "the collector stops with the demo" in table
    grpc = re.search(r"gRPC (127\.0\.0\.1:\d+)", out)
    assert grpc and not _port_open(grpc[1]), "the collector was left running"


@pytest.mark.slow
def test_ctrl_c_stops_everything_cleanly() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "crashfleet", "demo", "--hosts", "5", *FREE_PORTS],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    try:
        for line in proc.stdout:
            lines.append(line)
            if re.search(r"^\s+\d+\.\ds\s+buildtest\d+", line) or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(lines) + rest
    assert proc.returncode == 130, out
    assert "interrupted: stopping the fleet" in out and "Traceback" not in out
    _summary_numbers(out)
    grpc = re.search(r"gRPC (127\.0\.0\.1:\d+)", out)
    assert grpc and not _port_open(grpc[1]), "the collector was left running"
