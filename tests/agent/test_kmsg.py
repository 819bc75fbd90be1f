"""/dev/kmsg: record parsing, grouping into report blocks, and the reader over a file and a FIFO."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from agent.kmsg import MAX_BLOCK_LINES, BlockCollector, KmsgReader, KmsgRecord, parse_record

DATA = Path(__file__).resolve().parents[1] / "data" / "agent" / "kmsg"


def test_parse_record_fields_and_continuation_lines() -> None:
    record = parse_record(b"4,311,12345680,-;WARNING: CPU: 1 PID: 242 at x.c:1 f+0x1/0x2\n SUBSYSTEM=cpu\n")
    assert record == KmsgRecord(
        level=4,
        facility=0,
        seq=311,
        usec=12345680,
        continuation=False,
        text="WARNING: CPU: 1 PID: 242 at x.c:1 f+0x1/0x2",
        fields=(("SUBSYSTEM", "cpu"),),
    )
    assert record.line() == "[   12.345680] WARNING: CPU: 1 PID: 242 at x.c:1 f+0x1/0x2"


def test_parse_record_facility_flags_and_escapes() -> None:
    record = parse_record(b"30,7,1,c,extra;a\\x09b\\x0ac")
    assert record is not None
    assert (record.facility, record.level, record.continuation) == (3, 6, True)
    assert record.text == "a\tb c"


@pytest.mark.parametrize(
    "raw",
    [b"", b"no semicolon", b"x,1,2;text", b"1,2;text", b"-1,2,3,-;text", b"\xff\xfe;", b" SUBSYSTEM=x"],
)
def test_malformed_records_are_skipped(raw: bytes) -> None:
    assert parse_record(raw) is None


def records(lines: list[str]) -> list[KmsgRecord]:
    out = []
    for i, text in enumerate(lines):
        parsed = parse_record(f"4,{i},{i * 1000},-;{text}".encode())
        assert parsed is not None
        out.append(parsed)
    return out


def test_block_starts_at_trigger_with_context_and_ends_at_end_marker() -> None:
    collector = BlockCollector(quiet_seconds=2)
    blocks: list[str] = []
    for record in records(
        [
            "boot",
            "------------[ cut here ]------------",
            "WARNING: CPU: 0 PID: 1 at a.c:1 f",
            "Call Trace:",
            "---[ end trace 0000000000000000 ]---",
            "after",
        ]
    ):
        blocks += collector.feed(record, 0.0)
    assert len(blocks) == 1
    assert "cut here" in blocks[0] and blocks[0].rstrip().endswith("---[ end trace 0000000000000000 ]---")
    assert "after" not in blocks[0]
    assert not collector.active


def test_block_without_end_marker_ends_after_quiet_time() -> None:
    collector = BlockCollector(quiet_seconds=2)
    for record in records(["INFO: task x:1 blocked for more than 120 seconds.", "Call Trace:"]):
        assert collector.feed(record, 10.0) == []
    assert collector.flush(11.0) == []
    (block,) = collector.flush(12.5)
    assert "blocked for more than" in block


def test_kernel_time_gap_ends_a_block_while_reading_the_backlog() -> None:
    """At start the whole buffer arrives at once; boot time, not arrival time, separates reports."""
    collector = BlockCollector(quiet_seconds=2)
    first = parse_record(b"3,1,1000000,-;INFO: task a:1 blocked for more than 120 seconds.")
    later = parse_record(b"6,2,9000000,-;unrelated")
    assert first is not None and later is not None
    assert collector.feed(first, 0.0) == []
    (block,) = collector.feed(later, 0.0)
    assert "unrelated" not in block


def test_block_size_is_capped() -> None:
    collector = BlockCollector(quiet_seconds=1000)
    lines = ["BUG: soft lockup"] + ["x"] * (MAX_BLOCK_LINES + 10)
    blocks: list[str] = []
    for record in records(lines):
        blocks += collector.feed(record, 0.0)
    assert len(blocks) == 1 and blocks[0].count("\n") == MAX_BLOCK_LINES


def run_reader(path: Path, writer: threading.Thread | None = None) -> tuple[list[str], KmsgReader]:
    """Run a reader to the end of `path` (the writer, if any, starts once the reader is up)."""
    blocks: list[str] = []
    done = threading.Event()
    reader = KmsgReader(path, blocks.append, quiet_seconds=0.2)
    reader._thread = threading.Thread(target=lambda: (reader._run(), done.set()), daemon=True)
    reader.start()
    if writer is not None:
        writer.start()
    assert done.wait(10), "kmsg reader did not finish the file"
    reader.stop()
    return blocks, reader


def test_reader_over_a_file_in_kmsg_format() -> None:
    blocks, reader = run_reader(DATA / "warning-and-hung-task.kmsg")
    assert reader.records == 26
    assert len(blocks) == 2
    assert "WARNING: CPU: 1 PID: 242 at drivers/net/example.c:120" in blocks[0]
    assert "[   12.345680] WARNING" in blocks[0]
    assert "blocked for more than 120 seconds" in blocks[1]
    assert "Started session" not in blocks[1]


def test_reader_over_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "kmsg"
    os.mkfifo(fifo)
    data = (DATA / "warning-and-hung-task.kmsg").read_bytes()

    def write() -> None:
        with open(fifo, "wb") as f:
            for line in data.splitlines(keepends=True):
                f.write(line)
                f.flush()

    writer = threading.Thread(target=write)
    blocks, _ = run_reader(fifo, writer)
    writer.join(5)
    assert len(blocks) == 2


def test_reader_on_missing_device_logs_and_ends(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocks, _ = run_reader(tmp_path / "absent")
    assert blocks == []
    assert "cannot open kernel log" in caplog.text


def test_handler_errors_do_not_stop_the_reader(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def explode(block: str) -> None:
        raise RuntimeError("boom")

    reader = KmsgReader(DATA / "warning-and-hung-task.kmsg", explode, quiet_seconds=0.2)
    reader._run()
    reader.stop()
    assert caplog.text.count("kmsg block handler failed") == 2


def test_records_user_space_wrote_are_never_kernel_text() -> None:
    """Facility != 0 is user space writing /dev/kmsg: its BUG:/WARNING:/Call Trace: lines neither
    start a block nor land inside the kernel's; user-space faults are counted per program."""
    blocks: list[str] = []
    faults: list[str] = []
    done = threading.Event()
    reader = KmsgReader(DATA / "user-facility-and-faults.kmsg", blocks.append, quiet_seconds=0.2,
                        on_user_fault=faults.append)  # fmt: skip
    reader._thread = threading.Thread(target=lambda: (reader._run(), done.set()), daemon=True)
    reader.start()
    assert done.wait(10), "kmsg reader did not finish the file"
    reader.stop()
    assert reader.records == 25 and reader.foreign_records == 6
    assert len(blocks) == 1
    assert "WARNING: CPU: 1 PID: 242 at drivers/net/example.c:120" in blocks[0]
    assert "appd" not in blocks[0] and " dev_hard_start_xmit+0x8e/0x1e0" in blocks[0]
    assert sorted(faults) == ["java", "java", "node", "python3", "qemu-kvm"]
