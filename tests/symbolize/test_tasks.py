"""crash's `ps` from DWARF struct offsets: the walk over a synthetic memory image laid out by a
miniature kernel compiled at test time (offsets checked against the compiler's own offsetof),
and, opt-in, the real shared dumps with Debian's debug vmlinux."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from analysis.errors import DumpFormatError
from analysis.symbolize.elfinfo import ElfImage
from analysis.symbolize.tasks import TaskList, _state_code, list_tasks, render_ps
from tests.conftest import shared_path

SOURCE = Path(__file__).resolve().parents[1] / "data" / "symbolize" / "kernel" / "fake_kernel.c"
SLIDE = 0x2000000
HEAP = 0xFFFF888000000000
PER_CPU = (0xFFFF888100000000, 0xFFFF888100100000)


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    root = tmp_path_factory.mktemp("kernel")
    subprocess.run(["gcc", "-g", "-O2", "-o", str(root / "vmlinux"), str(SOURCE)], check=True, timeout=120)
    subprocess.run(["gcc", "-O0", "-DPRINT_OFFSETS", "-o", str(root / "offsets"), str(SOURCE)], check=True, timeout=120)
    printed = subprocess.run([str(root / "offsets")], capture_output=True, text=True, check=True).stdout
    return root / "vmlinux", {k: int(v) for k, v in (line.split() for line in printed.splitlines())}


@dataclass
class Memory:
    """Sparse kernel memory: what AddressSpace.read gives, for the addresses written here."""

    pages: dict[int, bytearray] = field(default_factory=dict)
    path: str = "synthetic.vmcore"

    def write(self, address: int, data: bytes) -> None:
        for i, byte in enumerate(data):
            page = self.pages.setdefault((address + i) >> 12, bytearray(4096))
            page[(address + i) & 0xFFF] = byte

    def read(self, address: int, length: int) -> bytes:
        out = bytearray()
        for a in range(address, address + length):
            page = self.pages.get(a >> 12)
            if page is None:
                raise DumpFormatError(self.path, f"page of {a:#x} not in the dump")
            out.append(page[a & 0xFFF])
        return bytes(out)


@dataclass(frozen=True)
class Task:
    address: int
    pid: int
    comm: str
    parent: int
    state: int = 1
    kthread: bool = False
    cpu: int = 0


@dataclass(frozen=True)
class Fleet:
    leaders: list[Task]  # init_task first: the circular `tasks` list
    threads: dict[int, list[Task]]  # leader address -> its other threads
    idle1: Task  # CPU 1's idle task, on no list
    current: tuple[int, int]  # what CPU 0 and CPU 1 were running


def _fleet(vmlinux: Path) -> Fleet:
    with ElfImage(str(vmlinux)) as image:
        init = image.symbol_values({"init_task"})["init_task"] + SLIDE
    init_proc, kthreadd, shell, worker = HEAP + 0x1000, HEAP + 0x2000, HEAP + 0x3000, HEAP + 0x4000
    return Fleet(
        leaders=[
            Task(init, 0, "swapper/0", init, state=0, kthread=True),
            Task(init_proc, 1, "init", init),
            Task(kthreadd, 2, "kthreadd", init, kthread=True, cpu=1),
            Task(shell, 100, "sh", init_proc, state=0, cpu=1),
        ],
        threads={shell: [Task(worker, 101, "sh-worker", init_proc, state=0x402)]},
        idle1=Task(HEAP + 0x10000, 0, "swapper/1", init_proc, state=0, kthread=True, cpu=1),
        current=(init, shell),
    )


def _image(vmlinux: Path, off: dict[str, int], fleet: Fleet, loop: bool = False) -> Memory:
    """The memory a dump of `fleet` would hold, with the symbols shifted by SLIDE."""
    with ElfImage(str(vmlinux)) as image:
        sym = image.symbol_values({"__per_cpu_offset", "current_task", "runqueues", "avenrun"})
    mem = Memory()
    everyone = fleet.leaders + [t for group in fleet.threads.values() for t in group] + [fleet.idle1]
    for task in everyone:
        base = task.address
        mem.write(base, bytes(off["size"]))
        mem.write(base + off["pid"], struct.pack("<i", task.pid))
        mem.write(base + off["tgid"], struct.pack("<i", task.pid))
        mem.write(base + off["comm"], task.comm.encode().ljust(16, b"\0"))
        mem.write(base + off["real_parent"], struct.pack("<Q", task.parent))
        mem.write(base + off["__state"], struct.pack("<I", task.state))
        mem.write(base + off["flags"], struct.pack("<I", 0x00200000 if task.kthread else 0))
        mem.write(base + off["cpu"], struct.pack("<I", task.cpu))
        head = base + off["thread_group"]
        mem.write(head, struct.pack("<QQ", head, head))
    leaders = fleet.leaders
    for i, task in enumerate(leaders):
        target = leaders[1] if loop and i == len(leaders) - 1 else leaders[(i + 1) % len(leaders)]
        mem.write(task.address + off["tasks"], struct.pack("<Q", target.address + off["tasks"]))
    for leader, group in fleet.threads.items():
        nodes = [leader + off["thread_group"]] + [t.address + off["thread_group"] for t in group]
        for i, node in enumerate(nodes):
            mem.write(node, struct.pack("<Q", nodes[(i + 1) % len(nodes)]))
    idle = (leaders[0].address, fleet.idle1.address)
    for cpu, base in enumerate(PER_CPU):
        mem.write(sym["__per_cpu_offset"] + SLIDE + 8 * cpu, struct.pack("<Q", base))
        mem.write(base + sym["current_task"], struct.pack("<Q", fleet.current[cpu]))
        mem.write(base + sym["runqueues"] + off["rq_idle"], struct.pack("<Q", idle[cpu]))
    mem.write(sym["avenrun"] + SLIDE, struct.pack("<3Q", 2048 * 3 // 2, 1024, 0))
    return mem


def test_walk_matches_the_synthetic_kernel(fake: tuple[Path, dict[str, int]]) -> None:
    vmlinux, off = fake
    with ElfImage(str(vmlinux)) as image:
        layout = image.struct_layout(image.symbol_values({"copy_process"})["copy_process"], "task_struct")
    for name in ("tasks", "pid", "tgid", "comm", "real_parent", "__state", "exit_state", "flags", "thread_group"):
        assert layout[name][0] == off[name], name  # DWARF agrees with offsetof
    assert layout["thread_info.cpu"][0] == off["cpu"]

    mem = _image(vmlinux, off, _fleet(vmlinux))
    with ElfImage(str(vmlinux)) as image:
        result = list_tasks(mem, image, SLIDE, cpus=2)  # type: ignore[arg-type]
    assert result.complete and result.problem is None
    rows = [(t.pid, t.ppid, t.cpu, t.state, t.comm, t.kernel_thread, t.current) for t in result.tasks]
    assert rows == [
        (0, 0, 0, "RU", "swapper/0", True, True),
        (0, 0, 1, "RU", "swapper/1", True, False),
        (1, 0, 0, "IN", "init", False, False),
        (2, 0, 1, "IN", "kthreadd", True, False),
        (100, 1, 1, "RU", "sh", False, True),
        (101, 1, 0, "ID", "sh-worker", False, False),
    ]
    assert result.load_average == (1.5, 0.5, 0.0)
    text = render_ps(result)
    assert text[0].split() == ["PID", "PPID", "CPU", "TASK", "ST", "COMM"]
    assert text[1].startswith(">") and text[1].endswith("RU  [swapper/0]")
    assert text[5].startswith(">") and text[5].endswith("RU  sh")


def test_looping_or_unreadable_list_stops_with_a_reason(fake: tuple[Path, dict[str, int]]) -> None:
    vmlinux, off = fake
    fleet = _fleet(vmlinux)
    looping = _image(vmlinux, off, fleet, loop=True)
    broken = _image(vmlinux, off, fleet)
    broken.write(fleet.leaders[1].address + off["tasks"], struct.pack("<Q", 0xFFFF999900000000))
    with ElfImage(str(vmlinux)) as image:
        result = list_tasks(looping, image, SLIDE, cpus=2)  # type: ignore[arg-type]
        assert not result.complete and result.problem == "task list loops"
        assert {t.pid for t in result.tasks} >= {0, 1, 2, 100}
        result = list_tasks(broken, image, SLIDE, cpus=2)  # type: ignore[arg-type]
    assert not result.complete and result.problem is not None and "unreadable" in result.problem
    assert {t.pid for t in result.tasks} >= {0, 1}  # what was read before the break is kept


@pytest.mark.parametrize(
    ("state", "exit_state", "code"),
    [(0, 0, "RU"), (1, 0, "IN"), (2, 0, "UN"), (0x402, 0, "ID"), (4, 0, "ST"), (8, 0, "TR"),
     (0x40, 0, "PA"), (0x200, 0, "WA"), (0x800, 0, "NE"), (0, 0x20, "ZO"), (0x80, 0x10, "DE"), (0x1000, 0, "??")],
)
def test_state_codes(state: int, exit_state: int, code: str) -> None:
    assert _state_code(state, exit_state) == code


@pytest.mark.slow
@pytest.mark.parametrize("crash", ["null", "bug", "warn", "softlockup"])
def test_shared_dumps_ps_with_debug_vmlinux(crash: str) -> None:
    vmlinux = os.environ.get("CRASHFLEET_DEBUG_VMLINUX")
    if not vmlinux:
        pytest.skip("set CRASHFLEET_DEBUG_VMLINUX to Debian's 6.1.0-56 debug vmlinux to run this")
    from analysis.vmcore import open_dump
    from analysis.vmcore.memory import AddressSpace

    # Ground truth: the oops header on the serial console, "CPU: 1 PID: 100 Comm: sh ...".
    serial = shared_path("vmcores", crash, "serial.log").read_text(errors="replace")
    match = re.search(r"CPU: (\d+) PID: (\d+) Comm: (\S+)", serial)
    assert match is not None
    cpu, pid, comm = int(match.group(1)), int(match.group(2)), match.group(3)
    dump = open_dump(str(shared_path("vmcores", crash, "vmcore.kdump-zlib")))
    try:
        with ElfImage(vmlinux) as image:
            result: TaskList = list_tasks(AddressSpace(dump), image, dump.vmcoreinfo.kernel_offset, 2)
    finally:
        dump.close()
    assert result.complete and len(result.tasks) >= 50
    by_pid = {(t.pid, t.comm): t for t in result.tasks}
    crashed = by_pid[(pid, comm)]
    assert (crashed.state, crashed.current, crashed.cpu) == ("RU", True, cpu)
    assert by_pid[(1, "init")].ppid == 0 and by_pid[(2, "kthreadd")].kernel_thread
    assert {(t.pid, t.comm) for t in result.tasks if t.pid == 0} == {(0, "swapper/0"), (0, "swapper/1")}


def test_ps_command_without_debuginfo_says_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crashfleet.cli import main

    vmcore = shared_path("vmcores", "null", "vmcore.kdump-zlib")
    assert main(["symbols", "ps", "--debuginfo", str(tmp_path), str(vmcore)]) == 1
    err = capsys.readouterr().err
    assert "no debug vmlinux of build-id eb4fbcd037e7253717950bf2b93bd5566f47c56f" in err
    assert main(["symbols", "ps", str(tmp_path / "absent.vmcore")]) == 1


@pytest.mark.slow
def test_ps_command_on_a_shared_dump(capsys: pytest.CaptureFixture[str]) -> None:
    vmlinux = os.environ.get("CRASHFLEET_DEBUG_VMLINUX")
    if not vmlinux:
        pytest.skip("set CRASHFLEET_DEBUG_VMLINUX to Debian's 6.1.0-56 debug vmlinux to run this")
    from crashfleet.cli import main

    assert main(["symbols", "ps", "--debuginfo", vmlinux, str(shared_path("vmcores", "null", "vmcore.kdump-lzo"))]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split(":")[0].strip() == "TASKS" and int(out[0].split(":")[1]) >= 50
    assert any(line.startswith(">   100       1    1 ") and line.endswith("RU  sh") for line in out)
