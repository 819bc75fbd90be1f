"""crash's `ps` from a dump plus its debug vmlinux: every task with pid, ppid, CPU, state and comm,
`>` on the tasks the CPUs were running, and the load average.

The dump reader (`analysis.vmcore.AddressSpace`) reads kernel memory; the debug vmlinux gives
the symbols (`init_task`, `current_task`, `__per_cpu_offset`, `avenrun`, `nr_cpu_ids`, shifted
by the dump's KASLR offset) and `struct task_struct`'s member offsets from DWARF, so nothing is
hard-coded per kernel build. The walk is bounded and stops at the first unreadable task, saying
so: a dump filtered by makedumpfile still keeps slab pages, where tasks live.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass

from analysis.errors import DebuginfoError, DumpFormatError
from analysis.symbolize.elfinfo import ElfImage
from analysis.vmcore.memory import AddressSpace

__all__ = ["MAX_TASKS", "TASK_STATE_BITS", "TaskInfo", "TaskList", "list_tasks", "render_ps"]

log = logging.getLogger(__name__)

MAX_TASKS = 200_000  # a corrupt list must not walk forever
PF_KTHREAD = 0x00200000
# `__state`/`exit_state` bits of 5.14+ kernels -> crash's two-letter codes, first match wins.
EXIT_STATE_BITS: tuple[tuple[int, str], ...] = ((0x20, "ZO"), (0x10, "DE"))
TASK_STATE_BITS: tuple[tuple[int, str], ...] = (
    (0x402, "ID"),  # TASK_IDLE = TASK_UNINTERRUPTIBLE | TASK_NOLOAD
    (0x001, "IN"),
    (0x002, "UN"),
    (0x004, "ST"),
    (0x008, "TR"),
    (0x040, "PA"),
    (0x200, "WA"),
    (0x800, "NE"),
)
# The symbols and task_struct members the walk needs; `thread_group` is optional (threads).
SYMBOLS: frozenset[str] = frozenset(
    {"init_task", "current_task", "__per_cpu_offset", "avenrun", "nr_cpu_ids", "copy_process",
     "runqueues", "scheduler_tick"}
)
MEMBERS: tuple[str, ...] = ("tasks", "pid", "tgid", "comm", "real_parent", "flags", "exit_state")
FSHIFT = 11  # avenrun fixed point


@dataclass(frozen=True, slots=True)
class TaskInfo:
    address: int
    pid: int
    ppid: int
    cpu: int | None
    state: str  # crash's code: RU IN UN ID ST TR PA WA NE ZO DE ??
    comm: str
    kernel_thread: bool
    current: bool  # what its CPU was running at the crash (crash's `>`)


@dataclass(frozen=True, slots=True)
class TaskList:
    tasks: tuple[TaskInfo, ...]
    load_average: tuple[float, float, float] | None
    complete: bool
    problem: str | None = None  # why the walk stopped early


class _Layout:
    """task_struct member offsets and the kernel symbols, from the debug vmlinux."""

    def __init__(self, vmlinux: ElfImage, slide: int) -> None:
        symbols = vmlinux.symbol_values(set(SYMBOLS))
        missing = {"init_task", "copy_process"} - set(symbols)
        if missing:
            raise DebuginfoError(vmlinux.path, f"symbols missing: {', '.join(sorted(missing))}")
        members = vmlinux.struct_layout(symbols["copy_process"], "task_struct")
        absent = [m for m in MEMBERS if m not in members]
        state = "__state" if "__state" in members else "state"
        if absent or state not in members:
            raise DebuginfoError(vmlinux.path, f"task_struct lacks {', '.join(absent or [state])}")
        self.members = members
        self.state = members[state]
        self.cpu = members.get("cpu") or members.get("thread_info.cpu")
        self.thread_group = members.get("thread_group")
        self.init_task = symbols["init_task"] + slide
        self.avenrun = symbols["avenrun"] + slide if "avenrun" in symbols else None
        self.per_cpu_offset = symbols["__per_cpu_offset"] + slide if "__per_cpu_offset" in symbols else None
        self.current_task = symbols.get("current_task")  # a per-cpu offset: no slide
        self.nr_cpu_ids = symbols["nr_cpu_ids"] + slide if "nr_cpu_ids" in symbols else None
        # Each CPU's idle task (swapper/N) is on no task list; crash finds it as rq->idle.
        self.runqueues = symbols.get("runqueues")  # per-cpu offset
        self.rq_idle: int | None = None
        if self.runqueues is not None and "scheduler_tick" in symbols:
            try:
                self.rq_idle = vmlinux.struct_layout(symbols["scheduler_tick"], "rq").get("idle", (None, 0))[0]
            except DebuginfoError as exc:
                log.info("struct rq not found, idle tasks only where current reason=%s", exc.reason)

    def offset(self, name: str) -> int:
        return self.members[name][0]


def _int(mem: AddressSpace, address: int, size: int) -> int:
    data = mem.read(address, size)
    return int.from_bytes(data, "little")


def _state_code(state: int, exit_state: int) -> str:
    for bit, code in EXIT_STATE_BITS:
        if exit_state & bit:
            return code
    if state == 0:
        return "RU"
    for bits, code in TASK_STATE_BITS:
        if state & bits == bits:
            return code
    return "??"


def _read_task(
    mem: AddressSpace, lay: _Layout, address: int, current: dict[int, int], idle_cpu: int | None
) -> TaskInfo:
    pid = _int(mem, address + lay.offset("pid"), 4)
    parent = _int(mem, address + lay.offset("real_parent"), 8)
    # Idle tasks (pid 0) were forked by init for the other CPUs; crash shows their parent as 0.
    ppid = _int(mem, parent + lay.offset("pid"), 4) if pid and parent and parent != address else 0
    comm = mem.read(address + lay.offset("comm"), 16).split(b"\0", 1)[0].decode("utf-8", "replace")
    state = _int(mem, address + lay.state[0], lay.state[1] or 4)
    exit_state = _int(mem, address + lay.offset("exit_state"), 4)
    flags = _int(mem, address + lay.offset("flags"), 4)
    cpu = _int(mem, address + lay.cpu[0], 4) if lay.cpu else None
    running_on = current.get(address)
    where = running_on if running_on is not None else idle_cpu if idle_cpu is not None else cpu
    return TaskInfo(
        address=address,
        pid=pid,
        ppid=ppid,
        cpu=where,
        state=_state_code(state, exit_state),
        comm=comm,
        kernel_thread=bool(flags & PF_KTHREAD),
        current=running_on is not None,
    )


def _per_cpu(mem: AddressSpace, lay: _Layout, cpus: int | None) -> tuple[dict[int, int], dict[int, int]]:
    """(task -> CPU it was running, idle task -> its CPU), from per-cpu `current_task` and
    `runqueues.idle`."""
    if lay.per_cpu_offset is None:
        return {}, {}
    count = cpus
    if count is None and lay.nr_cpu_ids is not None:
        count = _int(mem, lay.nr_cpu_ids, 4)
    current: dict[int, int] = {}
    idle: dict[int, int] = {}
    for cpu in range(min(count or 1, 8192)):
        base = _int(mem, lay.per_cpu_offset + 8 * cpu, 8)
        if lay.current_task is not None:
            task = _int(mem, base + lay.current_task, 8)
            if task:
                current.setdefault(task, cpu)
        if lay.runqueues is not None and lay.rq_idle is not None:
            task = _int(mem, base + lay.runqueues + lay.rq_idle, 8)
            if task:
                idle.setdefault(task, cpu)
    return current, idle


def _list_next(mem: AddressSpace, node: int) -> int:
    return _int(mem, node, 8)


def list_tasks(mem: AddressSpace, vmlinux: ElfImage, kernel_offset: int | None, cpus: int | None = None) -> TaskList:
    """Every task of the dump (the task list, each leader's threads, each CPU's idle task),
    sorted by pid like crash's `ps`."""
    lay = _Layout(vmlinux, kernel_offset or 0)
    try:
        current, idle = _per_cpu(mem, lay, cpus)
    except DumpFormatError as exc:
        log.warning("per-cpu tasks unreadable path=%s reason=%s", exc.path, exc.reason)
        current, idle = {}, {}
    seen: set[int] = set()
    order: list[int] = []
    problem: str | None = None
    tasks_off = lay.offset("tasks")
    try:
        node = _list_next(mem, lay.init_task + tasks_off)
        order.append(lay.init_task)
        seen.add(lay.init_task)
        while node != lay.init_task + tasks_off:
            if len(order) >= MAX_TASKS:
                problem = f"more than {MAX_TASKS} tasks; list cut"
                break
            task = node - tasks_off
            if task in seen:
                problem = "task list loops"
                break
            seen.add(task)
            order.append(task)
            node = _list_next(mem, node)
        if lay.thread_group is not None:
            for leader in list(order):
                head = leader + lay.thread_group[0]
                node = _list_next(mem, head)
                while node != head and len(order) < MAX_TASKS:
                    task = node - lay.thread_group[0]
                    if task in seen:
                        break
                    seen.add(task)
                    order.append(task)
                    node = _list_next(mem, node)
    except DumpFormatError as exc:
        problem = f"task list unreadable: {exc.reason}"
    for task in [*current, *idle]:
        if task not in seen:
            seen.add(task)
            order.append(task)
    tasks: list[TaskInfo] = []
    for address in order:
        try:
            tasks.append(_read_task(mem, lay, address, current, idle.get(address)))
        except DumpFormatError as exc:
            problem = problem or f"task at 0x{address:x} unreadable: {exc.reason}"
    load = None
    if lay.avenrun is not None:
        try:
            raw = struct.unpack("<3Q", mem.read(lay.avenrun, 24))
            load = (raw[0] / (1 << FSHIFT), raw[1] / (1 << FSHIFT), raw[2] / (1 << FSHIFT))
        except DumpFormatError as exc:
            log.info("load average unreadable path=%s reason=%s", exc.path, exc.reason)
    tasks.sort(key=lambda t: (t.pid, t.cpu if t.cpu is not None else -1, t.address))
    return TaskList(tuple(tasks), load, complete=problem is None, problem=problem)


def render_ps(tasks: TaskList) -> list[str]:
    """The list as crash's `ps` prints it (without the memory columns); `>` marks running tasks."""
    out = ["   PID    PPID  CPU       TASK        ST  COMM"]
    for t in tasks.tasks:
        comm = f"[{t.comm}]" if t.kernel_thread else t.comm
        cpu = "?" if t.cpu is None else str(t.cpu)
        out.append(f"{'>' if t.current else ' '}{t.pid:>6} {t.ppid:>7} {cpu:>4}  {t.address:016x}  {t.state}  {comm}")
    return out
