"""`analysis.signature.analyze` on hostile input: random bytes, mutated real logs, a 50 MB log.

The contract: whatever the bytes, `analyze` returns a list of finished records (possibly empty,
possibly marked corrupted) and raises nothing. Each record it returns is internally consistent:
a fingerprint always, and a `code` decode exactly when a `Code:` line was found, which either
names an instruction or says why not.
"""

from __future__ import annotations

import random
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.fingerprint import FINGERPRINT_VERSION
from analysis.model import CrashKind, CrashRecord
from analysis.signature import analyze
from tests.conftest import SHARED

SEED_NAME = "buildtest07-console.restored.txt"


@cache
def real_logs() -> tuple[bytes, ...]:
    """A few real logs to mutate: the seed, the vmcore consoles, a spread of syzkaller reports."""
    logs = []
    seed = SHARED / "corpora" / "seed"
    logs += [p.read_bytes() for p in sorted(seed.glob("buildtest07-console*.txt"))]
    logs += [p.read_bytes()[-60_000:] for p in sorted((SHARED / "vmcores").glob("*/serial.log"))]
    logs += [p.read_bytes() for p in sorted((SHARED / "corpora" / "syzkaller" / "report").glob("*"))[::50]]
    if not logs:
        pytest.skip(f"../shared is not beside this checkout ({SHARED}); no real logs to mutate")
    return tuple(logs)


def check(records: list[CrashRecord]) -> None:
    assert isinstance(records, list)
    for record in records:
        assert isinstance(record.kind, CrashKind)
        assert record.fingerprint is not None
        assert record.fingerprint.version == FINGERPRINT_VERSION
        assert len(record.fingerprint.value) == 32
        if record.code_line:
            assert record.code is not None
            assert (record.code.instruction is None) == (record.code.error is not None)
        if record.corrupted:
            assert record.corrupted_reason


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    check(analyze(data))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=2048))
def test_random_text(data: str) -> None:
    check(analyze(data))


# Fragments of oops reports, so that random combinations reach the deep paths of the parser,
# the decoder and the fingerprint (a random byte string rarely contains "Code:").
FRAGMENTS = (
    "BUG: unable to handle kernel NULL pointer dereference at 0000000000000060",
    "BUG: kernel NULL pointer dereference, address: 0000000000000008",
    "general protection fault, probably for non-canonical address 0xdffffc0000000001: 0000 [#1] SMP KASAN",
    "kernel BUG at fs/ext4/inode.c:1234!",
    "WARNING: CPU: 0 PID: 1 at kernel/foo.c:1 foo+0x1/0x2",
    "Kernel panic - not syncing: Fatal exception",
    "Oops: 0002 [#1] SMP",
    "RIP: 0010:foo+0x10/0x20 [mod]",
    "IP: [<ffffffff8142bb40>] __netif_receive_skb+0x60/0x6e0",
    "pc : foo+0x10/0x20",
    "Code: 48 8b <47> 18",
    "Code: 48 89 fa 48 c1 ea 03 <80> 3c 02 00",
    "Code: (d4210000)",
    "Code: 0f 0b <",
    "Code: Bad RIP value.",
    "RAX: 0000000000000000 RBX: ffff888000000000 RCX: 0000000000000000",
    "R12: 0000000000000000 R13: 0000000000000001 R14: ffffffffffffffff R15: 0",
    "x29: ffff800014ffbc50 x28: 0000000000000000",
    "Call Trace:",
    "Call trace:",
    " <IRQ>",
    " </IRQ>",
    " <TASK>",
    " ? bar+0x1/0x2",
    " baz.isra.0+0x3/0x4 [mod]",
    " [<ffffffff8142c25a>] process_backlog+0x9a/0x100",
    "Modules linked in: a b c [last unloaded: d]",
    "CPU: 3 PID: 42 Comm: x Tainted: G        W  O      6.1.0 #1",
    "Hardware name: QEMU Standard PC",
    "---[ end trace 0000000000000000 ]---",
    "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [sh:1]",
    "INFO: task kworker/0:1:12 blocked for more than 120 seconds.",
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=40)),
        max_size=60,
    ),
    st.sampled_from(["", "[  12.345678] ", "<4>", "Mar 28 23:50:56 host kernel: ", "[T123] "]),
)
def test_fragment_soup(lines: list[str], prefix: str) -> None:
    check(analyze("\n".join(prefix + line for line in lines)))


MUTATIONS = (
    "truncate",
    "drop-lines",
    "duplicate-lines",
    "flip-bytes",
    "insert-garbage",
    "shuffle-block",
    "nul-bytes",
)


def mutate(data: bytes, how: str, rng: random.Random) -> bytes:
    """One damage a console, a ring buffer or a copy-paste does to a log."""
    if not data:
        return data
    if how == "truncate":
        return data[: rng.randrange(len(data))]
    lines = data.split(b"\n")
    if how == "drop-lines":
        start = rng.randrange(len(lines))
        return b"\n".join(lines[:start] + lines[start + rng.randint(1, 10) :])
    if how == "duplicate-lines":
        start = rng.randrange(len(lines))
        return b"\n".join(
            lines[: start + 1] + lines[start : start + 5] * rng.randint(1, 4) + lines[start + 1 :]
        )
    if how == "shuffle-block":
        start = rng.randrange(len(lines))
        block = lines[start : start + 12]
        rng.shuffle(block)
        return b"\n".join(lines[:start] + block + lines[start + 12 :])
    buf = bytearray(data)
    if how == "flip-bytes":
        for _ in range(rng.randint(1, 40)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
    elif how == "insert-garbage":
        at = rng.randrange(len(buf))
        buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
    elif how == "nul-bytes":
        for _ in range(rng.randint(1, 20)):
            buf[rng.randrange(len(buf))] = 0
    return bytes(buf)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=4), st.randoms())
def test_mutated_real_logs(which: int, mutations: list[str], rng: random.Random) -> None:
    logs = real_logs()
    data = logs[which % len(logs)]
    for how in mutations:
        data = mutate(data, how, rng)
    check(analyze(data))


def test_mutation_keeps_seed_fingerprint_when_noise_only() -> None:
    """Damage outside the report (a garbage line before it) changes nothing about the crash."""
    seed = SHARED / "corpora" / "seed" / SEED_NAME
    if not seed.exists():
        pytest.skip(f"{seed} is not available")
    clean = analyze(seed.read_bytes())
    noisy = analyze(b"\x07\x1b[0m garbage \xff\xfe line\n" + seed.read_bytes())
    assert [r.fingerprint for r in noisy] == [r.fingerprint for r in clean]


@pytest.mark.slow
def test_fifty_megabyte_log() -> None:
    """A 50 MB console (hours of chatter with oopses in it) is parsed; only completion is asserted."""
    seed = SHARED / "corpora" / "seed" / SEED_NAME
    if not seed.exists():
        pytest.skip(f"{seed} is not available")
    chatter = b"".join(
        b"[%5d.%06d] usb 1-1: new high-speed USB device number %d using ehci-pci\n"
        % (i, i * 7919 % 10**6, i % 128)
        for i in range(2000)
    )
    unit = chatter + seed.read_bytes()
    size = 50 * 1024 * 1024
    data = (unit * (size // len(unit) + 1))[:size]
    records = analyze(data)
    expected = analyze(seed.read_bytes())[0].fingerprint
    assert records
    assert records[0].fingerprint == expected
