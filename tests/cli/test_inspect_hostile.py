"""`crashfleet inspect` on hostile and odd inputs: no traceback, explicit output, hex registers."""

from __future__ import annotations

from pathlib import Path

from tests.cli.test_inspect import inspect, inspect_json

LOGS = Path(__file__).resolve().parents[1] / "data" / "logs"


def test_huge_numbers_print_json_naming_what_was_left_out() -> None:
    """An 8,000-digit frame offset made `inspect --json` die in int -> str conversion."""
    [doc] = inspect_json(str(LOGS / "hostile-huge-numbers.log"))  # schema-validated
    [crash] = doc["crashes"]
    assert crash["corrupt_fields"] == ["pid", "registers.rip", "rip.address", "call_trace[0].offset"]
    assert crash["call_trace"][0]["offset"] is None and crash["pid"] is None
    done = inspect(str(LOGS / "hostile-huge-numbers.log"))
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert "LEFT OUT: pid, registers.rip, rip.address, call_trace[0].offset" in done.stdout


def test_registers_are_hex_strings_and_not_tainted_is_explicit() -> None:
    [doc] = inspect_json(str(LOGS / "hostile-code-hex-run.log"))
    [crash] = doc["crashes"]
    assert crash["registers"]["rbx"] == "0xffff9a1b7a6d8300"  # beyond 2**53: exact as a string
    assert crash["registers"]["rax"] == "0x0"
    assert crash["code"]["bad_register_value"] == "0x0"
    assert crash["tainted"] == "" and crash["taint_flags"] == []  # the line said "Not tainted"
    assert "TAINTED: Not tainted" in inspect(str(LOGS / "hostile-code-hex-run.log")).stdout


def test_a_build_number_alone_is_not_printed_as_the_release(tmp_path: Path) -> None:
    """2.6-era `Pid:` lines can carry `#1` with no release before it."""
    log = tmp_path / "pid-line.log"
    log.write_text(
        "BUG: unable to handle kernel NULL pointer dereference at 0000000000000060\n"
        "IP: [<ffffffff8142bb40>] __netif_receive_skb+0x60/0x6e0\n"
        "Pid: 0, comm: swapper Not tainted #1 Supermicro X8DTT-H/X8DTT-H\n"
        "Call Trace:\n"
        " [<ffffffff8142bf3a>] netif_receive_skb+0x5a/0x80\n"
    )
    [doc] = inspect_json(str(log))
    assert doc["crashes"][0]["kernel_release"] is None
    out = inspect(str(log)).stdout
    assert "RELEASE: unknown  (build #1)" in out and "RELEASE: #1" not in out


def test_rip_address_of_a_dump_comes_from_its_stack() -> None:
    """6.1 prints no RIP address; inspect fills it from the dump (confirmed by the Code: bytes)."""
    from tests.conftest import shared_path

    [doc] = inspect_json(str(shared_path("vmcores", "null", "vmcore.kdump-zlib")))
    crash = next(c for c in doc["crashes"] if c["kind"] == "null-deref")
    assert crash["rip"]["function"] == "crashme_napi_pending.constprop.0.isra.0"
    assert isinstance(crash["rip"]["address"], int) and crash["rip"]["address"] >> 32 == 0xFFFFFFFF
