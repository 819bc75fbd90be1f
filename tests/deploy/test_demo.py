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


def test_fake_shared_tree_supplies_dumps(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("shared\n")
    for _name, log_rel, dump_rel, _layout in demo.SHARED_CRASHES[:2]:
        (tmp_path / log_rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / log_rel).write_bytes(b"[    1.000000] BUG: something\n")
        (tmp_path / dump_rel).write_bytes(b"KDUMP   ")
    samples = demo.load_samples(tmp_path)
    by_name = {s.name: s for s in samples}
    assert by_name["null-deref"].dump == tmp_path / demo.SHARED_CRASHES[0][2]
    assert by_name["null-deref"].dump_layout == "rhel", "LZO pages are RHEL's default"
    assert "warning" not in by_name, "a crash type whose files are absent is left out"
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


def _story_samples(tmp_path: Path) -> list[demo.CrashSample]:
    """The fixtures, and stand-ins for the real crashes of ../shared with dumps (as load_samples
    makes them): the story takes the real ones first."""
    dumps = {name: tmp_path / f"{name}.vmcore" for name, *_ in demo.SHARED_CRASHES}
    real = [
        demo.CrashSample(name, f"[ 1.000000] {name}\n".encode(), dumps[name], dump_layout=layout)
        for name, _log, _dump, layout in demo.SHARED_CRASHES
    ]
    return [*real, *_fixture_samples()]


@pytest.mark.parametrize("hosts", [1, 2, 5, 8, 16])
@pytest.mark.parametrize("real", [True, False])
def test_plan_story_puts_each_part_where_the_story_says(hosts: int, real: bool, tmp_path: Path) -> None:
    samples = _story_samples(tmp_path) if real else _fixture_samples()
    drops = demo.plan_story(samples, hosts, window=12.0)
    assert drops == demo.plan_story(samples, hosts, window=12.0), "deterministic"
    assert all(0 <= d.at <= 12.0 for d in drops) and [d.at for d in drops] == sorted(d.at for d in drops)
    assert [d.seq for d in drops] == list(range(len(drops)))
    old = {h for h in range(1, hosts + 1) if demo.host_group(h, hosts) is demo.OLD_GROUP}
    new = set(range(1, hosts + 1)) - old
    bad = demo.bad_host(hosts)
    by_role: dict[str, list[demo.Drop]] = {}
    for d in drops:
        by_role.setdefault(d.role, []).append(d)
    names = {role: {d.sample.name for d in found} for role, found in by_role.items()}
    expected = {
        role: {n for _r, _c, ns in demo.STORY if _r == role for n in ns[: 1 if real else 2]} for role in names
    }
    if real:
        assert names == expected, "the real crashes play the parts when present"
    else:
        assert names == {r: {n for _r, _c, ns in demo.STORY if _r == r for n in ns[1:]} for r in names}
    # The NULL-pointer cluster: every new-group host, none of the old group.
    assert {d.host for d in by_role["null"]} == new
    assert len(by_role["null"]) >= len(new)
    # The update's cluster: both groups alike, never the EDAC host, each host once.
    update = [d.host for d in by_role["update"]]
    assert len(update) == len(set(update)) and bad not in update
    if hosts >= 4:
        assert (
            set(update) & old
            and set(update) & new
            and len(update) == 6 - (hosts < 8) * (6 - min(6, hosts - 1))
        )
    # The EDAC host: alone in its clusters, only in an old group of at least two.
    if hosts >= 4:
        assert bad in old and {d.host for d in by_role["bad"]} == {bad} and len(names["bad"]) == 2
    else:
        assert bad is None and "bad" not in by_role
    # Each real dump is placed once, on a host whose layout takes it.
    dumped = [d for d in drops if d.with_dump]
    assert len({d.sample.dump for d in dumped}) == len(dumped)
    assert all(demo.host_layout(d.host) in demo.DUMP_LAYOUTS for d in dumped)
    if real and hosts == 16:
        assert all(demo.host_layout(d.host) == d.sample.dump_layout for d in dumped), (
            "the distribution's format"
        )
        assert {d.sample.name for d in dumped} == {n for n, *_ in demo.SHARED_CRASHES}, (
            "every real dump is used"
        )
    # The parts are interleaved: no part arrives all at once.
    if hosts == 16:
        first_half = {d.role for d in drops[: len(drops) // 2]}
        assert first_half == {"null", "update", "bad"}


def _real_or_fixture_logs() -> list[tuple[str, bytes]]:
    logs = [(s.name, s.log) for s in _fixture_samples()]
    for name, log_rel, _dump, _layout in demo.SHARED_CRASHES:
        if (SHARED / log_rel).is_file():
            logs.append((name, (SHARED / log_rel).read_bytes()))
    return logs


@pytest.mark.parametrize(
    ("name", "log"), _real_or_fixture_logs(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_rehost_log_changes_the_host_not_the_crash(name: str, log: bytes) -> None:
    """The re-hosted log names the group's machine and modules; its crash, fingerprint and
    title stay; the EDAC lines are counted as the agent counts captured logs."""
    from agent.hwcount import capture_log_hardware_errors
    from analysis.signature import analyze

    (original,) = analyze(log)
    for group, edac in ((demo.NEW_GROUP, False), (demo.OLD_GROUP, True)):
        text = demo.rehost_log(log, group, edac=edac)
        (record,) = analyze(text)
        assert record.fingerprint == original.fingerprint and record.title == original.title, name
        assert record.hardware == group.hardware
        assert set(group.modules) <= set(record.modules)
        assert set(original.modules) <= set(record.modules), "the modules the crash names stay"
        assert record.kernel_release == original.kernel_release
        errors = dict(capture_log_hardware_errors(text))
        assert errors == ({"edac_ce": 2, "edac_ue": 1} if edac else dict(capture_log_hardware_errors(log)))
        if edac:
            before, _, _after = text.partition(b"EDAC MC0: 1 UE")
            assert original.title.split()[0].encode() not in before.splitlines()[-1], "before the crash"
        removed = [line for line in log.splitlines() if line not in text.splitlines()]
        assert all(b"Hardware name:" in line or b"Modules linked in:" in line for line in removed)


def test_each_host_reads_its_groups_inventory(tmp_path: Path) -> None:
    from agent.heartbeat import collect_inventory

    hosts = demo.make_hosts(tmp_path, 4)
    for host in hosts:
        root = host.crash_dir.parent
        inventory = collect_inventory(host.name, dmi_dir=root / "dmi", proc_dir=root / "proc")
        assert inventory.hardware == host.group.hardware
        assert inventory.modules == host.group.modules
        assert inventory.kernel_release == demo.NEW_RELEASE
    assert [h.group.name for h in hosts] == ["old", "old", "new", "new"]


def test_seed_history_leaves_the_exposure_the_story_says(tmp_path: Path) -> None:
    """Four weeks through the collector's ingest: the old group on the old release until the
    update, both groups on the new one since; the regression read from the store says so."""
    from datetime import UTC, datetime

    from collector.store import open_store

    hosts = demo.make_hosts(tmp_path, 4)
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    sent = demo.seed_history(tmp_path / "c.db", hosts, now)
    steps = demo.HISTORY_DAYS * 86400 // demo.HISTORY_INTERVAL_S
    after = demo.UPDATE_DAYS * 86400 // demo.HISTORY_INTERVAL_S
    assert sent == 2 * steps + 2 * after + 4
    store = open_store(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        with store._read_tx() as tx:  # type: ignore[attr-defined]
            rows = tx.all("SELECT dim, value, SUM(seconds) FROM exposure_days GROUP BY dim, value")
    finally:
        store.close()
    days = {(dim, value): seconds / 86400 for dim, value, seconds in rows}
    old_days = demo.HISTORY_DAYS - demo.UPDATE_DAYS
    assert days[("kernel_release", demo.OLD_RELEASE)] == pytest.approx(2 * old_days, abs=0.01)
    assert days[("kernel_release", demo.NEW_RELEASE)] == pytest.approx(4 * demo.UPDATE_DAYS, abs=0.01)
    assert days[("hardware", demo.NEW_GROUP.hardware)] == pytest.approx(2 * demo.UPDATE_DAYS, abs=0.01)
    assert days[("module", "veth")] == days[("hardware", demo.NEW_GROUP.hardware)]
    assert days[("hardware", demo.OLD_GROUP.hardware)] == pytest.approx(2 * demo.HISTORY_DAYS, abs=0.01)


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


def test_on_a_terminal_the_page_stays_up_until_ctrl_c(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
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
        stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, preexec_fn=_ctrl_c_as_on_a_terminal,
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
    match = re.search(
        r"(\d+) of (\d+) crashes placed in crash directories, (\d+) stored in (\d+) clusters", out
    )
    assert match, out
    dropped, planned, stored, clusters = map(int, match.groups())
    return dropped, planned, stored, clusters


def _block(out: str, start: str, end: str | None) -> str:
    begin = out.index(start)
    return out[begin : out.index(end, begin) if end is not None else len(out)]


@pytest.mark.slow
@pytest.mark.parametrize("data", ["shared", "fixtures"])
def test_demo_runs_unattended_and_tells_the_story(data: str, tmp_path: Path) -> None:
    """End to end: every crash reaches the collector once, and the fleet's answers are the
    story's: the new group's machine and modules first for the top cluster, the EDAC host
    flagged, the update's cluster's window between the two releases."""
    if data == "shared" and not (SHARED / "README.md").is_file():
        pytest.skip(f"{SHARED} is absent: the real dumps are not there")
    shared = SHARED if data == "shared" else tmp_path / "no-shared"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "crashfleet", "demo", "--duration", "30", "--shared", str(shared), *FREE_PORTS],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Traceback" not in out + result.stderr
    assert time.monotonic() - started < 90
    dropped, planned, stored, clusters = _summary_numbers(out)
    assert dropped == planned == len(demo.plan_story(demo.load_samples(shared), demo.MAX_HOSTS, None))
    assert stored == dropped, "every crash dropped reached the collector exactly once"
    for i in range(1, demo.MAX_HOSTS + 1):
        assert f"buildtest{i:02d}" in out
    for layout in demo.LAYOUTS:
        assert f"({layout})" in out
    assert re.search(r"history: +\d+ heartbeats replayed", out)
    table = _block(out, "ID ", "What is different")
    assert re.search(r"^ID\s+COUNT\s+HOSTS", table, re.M)
    rows = [line for line in table.splitlines()[1:] if re.match(r"^[0-9a-f]{8,}\s+\d+", line)]
    assert len(rows) == clusters == 4
    assert sum(int(line.split()[1]) for line in rows) == stored
    null_title = "crashme_napi_pending" if data == "shared" else "e1000_clean_rx_irq"
    assert null_title in rows[0], "the NULL-pointer cluster is the top one"
    if data == "shared":
        assert "vmcore + log (vmcore.kdump-lzo)" in out, "the real dumps of ../shared were used"
    else:
        assert "no real dumps" in out and "vmcore +" not in out

    # What is different about the top cluster's hosts: the new group's machine, veth and bridge.
    top = _block(out, "What is different", "Is it the kernel or the machine")
    findings = re.findall(r"^  (\d+)\. (.*)$", top, re.M)
    assert findings, top
    first = findings[0][1]
    planted = [f"hardware {demo.NEW_GROUP.hardware}:", *(f"{m} loaded:" for m in demo.CONTAINER_MODULES)]
    assert any(first.startswith(p) for p in planted), first
    for p in planted:
        assert re.search(
            rf"^(  1\. |       · ){re.escape(p)} 8 of 8 crashing hosts vs 8 of {demo.MAX_HOSTS} in the fleet", top, re.M
        ), p
    assert f"hardware {demo.OLD_GROUP.hardware}" not in top
    # A few explained combinations under the finding, the rest counted.
    assert len(re.findall(r"^       · ", top, re.M)) <= 3 and re.search(r"^       … and \d+ more explained by ", top, re.M)
    # None of the crashing hosts ever ran the old release: no regression to claim for this cluster.
    assert "regression between" not in top
    assert f"too little exposure on {demo.OLD_RELEASE} among hosts with " in top

    # Is it the kernel or the machine: the EDAC host alone, with its hardware errors.
    suspects = _block(out, "$ crashfleet hosts --suspect", "On which release")
    flagged = [line.split() for line in suspects.splitlines() if line.startswith("buildtest")]
    assert [f[0] for f in flagged] == [f"buildtest{demo.BAD_HOST:02d}"], suspects
    _host, _score, _crashes, clusters_hit, unshared, hw_errors = flagged[0][:6]
    # Three EDAC events in each text log; a capture with a dump is read from the dump's own log.
    plan = demo.plan_story(demo.load_samples(shared), demo.MAX_HOSTS, None)
    texts = sum(1 for d in plan if d.role == "bad" and not d.with_dump)
    assert (clusters_hit, unshared) == ("2", "2") and int(hw_errors) == 3 * texts > 0
    assert "uncorrected hardware errors" in suspects

    # The update's cluster: nothing about the machines, a window between the releases.
    update = _block(out, "On which release", None)
    assert "nothing significant" in update
    assert f"regression between {demo.OLD_RELEASE} and {demo.NEW_RELEASE}" in update
    assert re.search(rf"^{re.escape(demo.OLD_RELEASE)}\s+0\s+168\.0\s", update, re.M), (
        "no crash over 168 host-days"
    )
    # Not on a terminal: the collector stops with the demo, so no URL is printed after the table.
    assert "http://" not in out[out.index("ID ") :] and "the collector stops with the demo" in out
    grpc = re.search(r"gRPC (127\.0\.0\.1:\d+)", out)
    assert grpc and not _port_open(grpc[1]), "the collector was left running"


def _ctrl_c_as_on_a_terminal() -> None:
    """preexec_fn of a demo a test sends Ctrl-C to. A pytest started in the background of a
    non-interactive shell (`cmd &`, nohup) inherits SIGINT ignored, as would the demo; a Ctrl-C
    typed at a terminal reaches a demo whose SIGINT has its default action."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_demo(when: str) -> tuple[int, str]:
    """Run a 5-host demo, send it SIGINT after the first output line matching `when`; its exit
    status and whole output (pytest-timeout bounds a demo that never prints it)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "crashfleet", "demo", "--hosts", "5", *FREE_PORTS],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=_ctrl_c_as_on_a_terminal,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if re.search(when, line):
                break
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, "".join(lines) + rest


@pytest.mark.slow
def test_ctrl_c_stops_everything_cleanly() -> None:
    returncode, out = _interrupt_demo(r"^\s+\d+\.\ds\s+buildtest\d+")  # the first crash stored
    assert returncode == 130, out
    assert "interrupted: stopping the fleet" in out and "Traceback" not in out
    _summary_numbers(out)
    grpc = re.search(r"gRPC (127\.0\.0\.1:\d+)", out)
    assert grpc and not _port_open(grpc[1]), "the collector was left running"


def test_a_log_without_timestamps_is_dropped_once() -> None:
    """Copies of it could not be told apart: the collector would count one crash."""
    fixtures = _fixture_samples()
    plain = demo.CrashSample("e1000e-null-deref", b"BUG: kernel NULL pointer dereference\n", varies=False)
    samples = [plain if s.name == plain.name else s for s in fixtures]
    drops = demo.plan_story(samples, demo.MAX_HOSTS, None)
    assert [d.role for d in drops if d.sample is plain] == ["null"]
    assert len([d for d in drops if d.role == "update"]) == 6


@pytest.mark.slow
def test_ctrl_c_before_the_fleet_runs_leaves_nothing_behind() -> None:
    """A Ctrl-C during the history replay or the collector's start: exit 130 with a plain line,
    no traceback, and no collector process left serving (it runs in a session of its own)."""
    returncode, out = _interrupt_demo(r"^  history:")  # the replay is done; the collector starts next
    assert returncode == 130, out
    assert "Traceback" not in out
    assert "interrupted" in out
    workdir = re.search(r"on this machine \(in (\S+)\)", out)
    assert workdir, out
    assert _processes_mentioning(workdir[1]) == [], "processes left running"


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that contain `text` (read from /proc, no procps needed)."""
    found = []
    me = Path("/proc/self").resolve().name
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        if cmdline.parent.name == me:
            continue
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # the process exited meanwhile
        if text in args:
            found.append(args)
    return found
