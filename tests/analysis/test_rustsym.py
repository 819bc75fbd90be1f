"""`analysis.rustsym`: Rust v0 names read back to paths; anything else passes through untouched."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analysis.rustsym import demangle_rust

CASES = [
    ("_RNvMs3_NtCshgDM7dBCdno_11rust_binder7processNtB5_7Process10update_ref",
     "<rust_binder::process::Process>::update_ref"),
    ("_RNvXs1_CscPPBqWtAqum_11ashmem_rustNtB5_6AshmemNtNtCs43vyB533jt3_6kernel10miscdevice10MiscDevice4mmap",
     "<ashmem_rust::Ashmem as kernel::miscdevice::MiscDevice>::mmap"),
    ("_RNvCscSpY9Juk0HT_7___rustc17rust_begin_unwind", "__rustc::rust_begin_unwind"),
    ("_RNvNtNtCs9jEwPDbx20M_4core9panicking11panic_const24panic_const_sub_overflow",
     "core::panicking::panic_const::panic_const_sub_overflow"),
    ("_RNvCshgDM7dBCdno_11rust_binder26rust_binder_unlocked_ioctl", "rust_binder::rust_binder_unlocked_ioctl"),
    ("_RNvMNtCs1234_5alloc3vecINtB2_3VecpE4push", "<alloc::vec::Vec>::push"),  # generic args dropped
    ("_RNvYReNtNtCs1234_4core3fmt7Display3fmt", "<&str as core::fmt::Display>::fmt"),
]  # fmt: skip


@pytest.mark.parametrize(("mangled", "readable"), CASES)
def test_demangle(mangled: str, readable: str) -> None:
    assert demangle_rust(mangled) == readable


@pytest.mark.parametrize(
    "symbol",
    ["__netif_receive_skb", "_R", "_RXX", "_RNv", "_RNvC99toolong", "_RNvB9_3foo", "_RC" + "N" * 5000, "_ZN3foo3barEv"],
)
def test_not_readable_is_returned_unchanged(symbol: str) -> None:
    assert demangle_rust(symbol) == symbol


@given(st.text(alphabet="_RNvCMXYIBsLKSRQPOTAEabchjlmtuxyz0123456789", max_size=60))
def test_never_raises(symbol: str) -> None:
    assert isinstance(demangle_rust("_R" + symbol), str)
