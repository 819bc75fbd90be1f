"""Analyzers the warm worker's tests hand to its zygote (`python -m agent.warm --analyzer ...`).

They run in the forked workers, so they leave what the test needs to see in files, never in
memory: the test process is not the worker.
"""

from __future__ import annotations

import ctypes
import os
import resource
from pathlib import Path

from analysis.model import CrashRecord
from analysis.signature import analyze

RECORD_ENV = "CRASHFLEET_TEST_WARM_RECORD"  # a file each analysis appends "pid ppid" to


def recording(data: bytes | str) -> list[CrashRecord]:
    """The real analyzer; also notes which process read the log and which process is its parent."""
    path = os.environ.get(RECORD_ENV)
    if path:
        with Path(path).open("a") as out:
            out.write(f"{os.getpid()} {os.getppid()}\n")
    return analyze(data)


def hostile(data: bytes | str) -> list[CrashRecord]:
    """Misbehaves on a marker in the log, as a reader fed a hostile dump might; else the real one."""
    raw = data if isinstance(data, bytes) else data.encode()
    if b"HOSTILE-LOOP" in raw:
        while True:  # a reader that never ends: only the daemon's timeout stops it
            pass
    if b"HOSTILE-SEGFAULT" in raw:
        ctypes.string_at(0)  # C code reading address 0: SIGSEGV
    if b"HOSTILE-MEMORY" in raw:
        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY or soft > 4 << 30:
            # Never eat the test machine's memory: without the worker's limit this is the failure.
            raise AssertionError(f"the worker has no memory limit (RLIMIT_AS={soft})")
        hog = []
        while True:
            hog.append(bytearray(32 << 20))
    return recording(data)
