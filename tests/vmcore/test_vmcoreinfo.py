"""VMCOREINFO text -> typed values: signed NUMBERs, hex SYMBOLs, absent keys stay None."""

from __future__ import annotations

from analysis.vmcore import parse_vmcoreinfo

TEXT = b"""OSRELEASE=6.1.0-56-amd64
BUILD-ID=EB4FBCD037E7253717950BF2B93BD5566F47C56F
PAGESIZE=4096
SYMBOL(init_uts_ns)=ffffffffb05fb000
OFFSET(uts_namespace.name)=0
SIZE(printk_info)=88
LENGTH(mem_section)=4096
NUMBER(phys_base)=-650117120
NUMBER(kimage_voffset)=0xffff7fff7d600000
KERNELOFFSET=2da00000
CRASHTIME=1574266958
garbage line without equals
SYMBOL(bad)=not-hex
\x00\x00trailing padding"""


def test_typed_values() -> None:
    info = parse_vmcoreinfo(TEXT)
    assert info.osrelease == "6.1.0-56-amd64"
    assert info.build_id == "eb4fbcd037e7253717950bf2b93bd5566f47c56f"
    assert info.page_size == 4096
    assert info.symbol("init_uts_ns") == 0xFFFFFFFFB05FB000
    assert info.offset("uts_namespace.name") == 0
    assert info.size("printk_info") == 88
    assert info.length("mem_section") == 4096
    assert info.number("phys_base") == -650117120
    assert info.number("kimage_voffset") == 0xFFFF7FFF7D600000
    assert info.kernel_offset == 0x2DA00000
    assert info.crash_time == 1574266958
    assert info.symbol("bad") is None
    assert info.raw["SYMBOL(bad)"] == "not-hex"


def test_absent_keys() -> None:
    info = parse_vmcoreinfo(b"")
    assert info.osrelease is None and info.crash_time is None and info.kernel_offset is None
    assert info.symbol("prb") is None and info.number("phys_base") is None
