"""`analysis.decode`: golden cases under tests/data/decode/ and a differential check against objdump.

Each `tests/data/decode/<case>.txt` holds `arch:`, optional `fault_address:`, `registers:` and
`interrupted: yes` (a lockup's Code: line), `warning: yes` (a WARNING's), `stack_guard: yes` (a
stack overflow's) and `pf_error:` (an x86 #PF error code) lines and a `Code:` line (continuation lines indented, as consoles wrap it); `<case>.expected.json`
beside it is the `CodeDecode` the case must give. `CRASHFLEET_UPDATE_GOLDEN=1` rewrites the
expected files from the current output (review the diff before committing).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.decode import context_listing, decode_code, normalize_arch, parse_code_line
from analysis.model import CodeDecode
from tests.conftest import shared_path

DATA = Path(__file__).resolve().parents[1] / "data" / "decode"
UPDATE = os.environ.get("CRASHFLEET_UPDATE_GOLDEN") == "1"
CASES = sorted(p.stem for p in DATA.glob("*.txt"))


def load_case(path: Path) -> tuple[str, str, dict[str, int], int | None]:
    """A case file's Code: text, arch, registers and fault address (see the module docstring)."""
    arch = "x86_64"
    fault: int | None = None
    registers: dict[str, int] = {}
    code: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        if code and line[:1].isspace():
            code.append(line)
        elif line.startswith("arch:"):
            arch = line.split(":", 1)[1].strip()
        elif line.startswith("fault_address:"):
            fault = int(line.split(":", 1)[1], 0)
        elif line.startswith("registers:"):
            for pair in line.split(":", 1)[1].split():
                name, value = pair.split("=")
                registers[name] = int(value, 0)
        elif line.startswith(("Code:", "Instruction dump:", "Krnl Code:")):
            code.append(line)
    return "\n".join(code), arch, registers, fault


def as_json(decode: CodeDecode) -> dict[str, Any]:
    out = asdict(decode)
    out["code_bytes"] = decode.code_bytes.hex(" ")
    return out


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    path = DATA / f"{case}.txt"
    code, arch, registers, fault = load_case(path)
    interrupted = "\ninterrupted: yes" in path.read_text()
    warning = "\nwarning: yes" in path.read_text()
    pf = re.search(r"^pf_error: *(\S+)", path.read_text(), re.MULTILINE)
    pf_error = int(pf.group(1), 0) if pf else None
    got = as_json(
        decode_code(
            code, arch, registers, fault, interrupted=interrupted, warning=warning, pf_error=pf_error,
            stack_guard="\nstack_guard: yes" in path.read_text(),
        )
    )  # fmt: skip
    expected_path = DATA / f"{case}.expected.json"
    if UPDATE:
        expected_path.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    assert expected_path.exists(), f"no {expected_path.name}; run with CRASHFLEET_UPDATE_GOLDEN=1 and review"
    assert got == json.loads(expected_path.read_text())


def test_every_case_has_an_expected_file() -> None:
    expected = {p.name.removesuffix(".expected.json") for p in DATA.glob("*.expected.json")}
    assert expected == set(CASES)


def test_seed_verdict() -> None:
    """The issue's headline pattern: `cmp` through r12 = 0 is a NULL pointer + 0x60."""
    code, arch, registers, fault = load_case(DATA / "null_r12_cmp.txt")
    got = decode_code(code, arch, registers, fault)
    assert got.instruction == "cmp qword ptr [r12 + 0x60], rax"
    assert (got.bad_register, got.bad_register_value) == ("r12", 0)
    assert got.access == "NULL pointer + 0x60 through r12"
    assert got.operation == "read"
    assert got.error is None


def test_published_and_restored_seed_decode_the_same() -> None:
    wrapped = decode_code(*load_case(DATA / "null_r12_cmp_wrapped.txt"))
    restored = decode_code(*load_case(DATA / "null_r12_cmp.txt"))
    assert wrapped.code_bytes == restored.code_bytes
    assert (wrapped.instruction, wrapped.access) == (restored.instruction, restored.access)


def test_context_listing_lines_up_on_the_marker() -> None:
    decode = decode_code(*load_case(DATA / "null_r12_cmp.txt"))
    listing = context_listing(decode)
    faulting = [line for line in listing if line.faulting]
    assert len(faulting) == 1
    assert faulting[0].offset == decode.fault_offset
    assert faulting[0].text == decode.instruction
    assert any(line.text == "lea rax, [r12 + 0x60]" for line in listing)


def test_context_listing_empty_when_decode_failed() -> None:
    assert context_listing(decode_code("Code: Bad RIP value.", "x86_64", {}, None)) == ()


def test_parse_code_line_word_order() -> None:
    """Word architectures print instruction values; memory order is little-endian (big on powerpc)."""
    assert parse_code_line("Code: (d4210000)", "arm64").data == bytes.fromhex("000021d4")
    assert parse_code_line("Code: (7c0802a6)", "ppc64le").data == bytes.fromhex("7c0802a6")


def test_arch_aliases() -> None:
    assert normalize_arch("AMD64") == "x86_64"
    assert normalize_arch("aarch64") == "arm64"
    assert normalize_arch("i686") == "i386"


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=400),
    st.sampled_from(["x86_64", "i386", "arm64", "arm", "riscv64", "ppc64", "s390x", ""]),
)
def test_never_raises_on_any_text(text: str, arch: str) -> None:
    got = decode_code(text, arch, {}, None)
    assert (got.instruction is None) == (got.error is not None)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(min_size=1, max_size=64),
    st.integers(min_value=0, max_value=63),
    st.sampled_from(["x86_64", "i386"]),
    st.dictionaries(
        st.sampled_from(["rax", "rbx", "r12", "rdi", "eax", "rsp", "rip", "cs"]), st.integers(0, 2**64 - 1)
    ),
    st.one_of(st.none(), st.integers(0, 2**64 - 1)),
)
def test_random_x86_bytes_decode_or_explain(
    data: bytes, marker: int, arch: str, registers: dict[str, int], fault: int | None
) -> None:
    """Any byte string with a marker either decodes to an instruction and a verdict or names why not."""
    marker %= len(data)
    tokens = [f"<{b:02x}>" if i == marker else f"{b:02x}" for i, b in enumerate(data)]
    got = decode_code("Code: " + " ".join(tokens), arch, registers, fault)
    assert got.fault_offset == marker
    if got.error is None:
        assert got.instruction
        assert got.access
    else:
        assert got.instruction is None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=8),
    st.sampled_from(["arm64", "arm"]),
    st.dictionaries(
        st.sampled_from([f"x{n}" for n in range(31)] + [f"r{n}" for n in range(13)] + ["sp", "pc", "fp"]),
        st.integers(0, 2**64 - 1),
    ),
)
def test_random_words_decode_or_explain(words: list[int], arch: str, registers: dict[str, int]) -> None:
    line = "Code: " + " ".join(f"{w:08x}" for w in words[:-1]) + f" ({words[-1]:08x})"
    got = decode_code(line, arch, registers, None)
    assert got.fault_offset == 4 * (len(words) - 1)
    assert (got.instruction is None) == (got.error is not None)


# --- differential: capstone's faulting instruction vs syzkaller's objdump "best guess" ----------

_ATT_SUFFIX = re.compile(r"^(?P<m>[a-z]+?)(?:b|w|l|q)$")
_NUMBER = re.compile(r"[-+]?(?:0x[0-9a-f]+|\d+)")
_REGISTER = re.compile(
    r"\b(?:[re]?[abcd]x|[re]?[sd]il?|[re]?[sb]pl?|r\d+[dwb]?|[abcd][lh]|xmm\d+|[xwv]\d+|sp|fp|ip|lr|pc|sb|sl)\b"
)


def _normalize(text: str) -> tuple[str, frozenset[str], frozenset[int]]:
    """Mnemonic, registers and numbers of an instruction, in a form both syntaxes reduce to."""
    text = text.lower().split("//")[0].split("@")[0].split("<")[0].strip()
    mnemonic, _, operands = text.replace("\t", " ").partition(" ")
    mnemonic = {"callq": "call", "retq": "ret", "jmpq": "jmp", "movabs": "mov"}.get(mnemonic, mnemonic)
    operands = operands.replace("%", "").replace("$", "").replace("#", "")
    registers = frozenset(_REGISTER.findall(operands))
    numbers = frozenset(int(n, 0) for n in _NUMBER.findall(_REGISTER.sub(" ", operands)))
    numbers = frozenset(n for n in numbers if n not in (0, 1))  # objdump spells scale 1 and $0x0 explicitly
    return mnemonic, registers, numbers


def _same_instruction(objdump: str, capstone_text: str) -> bool:
    m1, r1, n1 = _normalize(objdump)
    m2, r2, n2 = _normalize(capstone_text)
    if m1 != m2:
        stripped = _ATT_SUFFIX.match(m1)
        if not stripped or stripped.group("m") != m2:
            return False
    return r1 == r2 and n1 == n2


def _syzkaller_cases() -> list[tuple[str, str, str]]:
    """(name, Code: line, objdump's trapping instruction) from every report with a disassembly."""
    root = shared_path("corpora", "syzkaller")
    cases = []
    files = sorted((root / "decompile").glob("*/*.out")) + sorted((root / "guilty").glob("*"))
    for path in files:
        text = path.read_text(errors="replace")
        if "Code disassembly" not in text:
            continue
        report, _, listing = text.partition("Code disassembly")
        code = next(line for line in report.splitlines() if line.lstrip().startswith("Code:"))
        trapping = next(line for line in listing.splitlines() if line.startswith("*"))
        # "* 2a:\t48 f7 f5    \tdiv    %rbp <-- trapping instruction": offset, bytes, text
        instruction = " ".join(trapping.split("<--")[0].split("\t")[2:]).strip()
        arch = path.parent.name if path.parent.parent.name == "decompile" else _guess_arch(report)
        cases.append((f"{path.parent.name}/{path.name}", code, f"{arch}|{instruction}"))
    return cases


def _guess_arch(report: str) -> str:
    """The report's own register dump names the architecture."""
    if "PC is at" in report or re.search(r"^\s*r10: ", report, re.MULTILINE):
        return "arm"
    if re.search(r"^\s*pc : ", report, re.MULTILINE):
        return "arm64"
    return "amd64"


def test_differential_against_syzkaller_objdump(capsys: pytest.CaptureFixture[str]) -> None:
    """Capstone's faulting instruction agrees with objdump's on every syzkaller case that has one."""
    cases = _syzkaller_cases()
    assert len(cases) >= 3
    agreed = []
    for name, code, expected in cases:
        arch, instruction = expected.split("|", 1)
        got = decode_code(code, {"amd64": "x86_64"}.get(arch, arch), {}, None)
        same = got.instruction is not None and _same_instruction(instruction, got.instruction)
        agreed.append(same)
        if not same:
            print(f"disagree {name}: objdump {instruction!r} capstone {got.instruction!r} ({got.error})")
    rate = 100 * sum(agreed) / len(agreed)
    with capsys.disabled():
        print(
            f"\ndecode differential: {sum(agreed)}/{len(agreed)} faulting instructions agree ({rate:.0f} %)"
        )
    assert all(agreed)


def test_normalize_is_strict_enough() -> None:
    """The loose comparison still tells different instructions apart."""
    assert _same_instruction("cmpb   $0x0,(%rdx,%rax,1)", "cmp byte ptr [rdx + rax], 0")
    assert _same_instruction("ldr\tx1, [x8, #24]", "ldr x1, [x8, #0x18]")
    assert not _same_instruction("mov    0x20(%rbx),%rbx", "mov rbx, qword ptr [rbx + 0x28]")
    assert not _same_instruction("div    %rbp", "div rbx")


def _objdump_bench() -> Any:
    """bench/decode_vs_objdump.py as a module: one normalization for the bench and this test."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "bench" / "decode_vs_objdump.py"
    spec = importlib.util.spec_from_file_location("decode_vs_objdump", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_agrees_with_objdump_on_corpus_code_lines(tmp_path: Path) -> None:
    """GNU objdump (what scripts/decodecode runs) is the oracle for the faulting x86 instruction."""
    import shutil

    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump (binutils) is not installed; the objdump oracle is unavailable")
    bench = _objdump_bench()
    lines = bench.code_lines(shared_path(""))[::6]
    assert len(lines) >= 40
    disagreements = []
    for line in lines:
        got = decode_code(line, "x86_64", {}, None)
        parsed = parse_code_line(line, "x86_64")
        theirs = bench.objdump_first(
            objdump, parsed.data[parsed.fault_offset :], parsed.fault_offset, tmp_path
        )
        assert got.instruction is not None, line
        if theirs is None or theirs == "(bad)":
            continue
        assert bench.squash(got.instruction).split()[0] == bench.squash(theirs).split()[0], (line, theirs)
        if bench.squash(got.instruction) != bench.squash(theirs):
            disagreements.append((got.instruction, theirs))
    # Known, documented differences only: capstone 5 prints `ud1` without its operands.
    assert all(ours == "ud1" for ours, _ in disagreements), disagreements


def test_context_listing_when_rip_moves_branch_targets() -> None:
    """The decode uses the real RIP (branch targets are absolute), the listing uses offsets."""
    line = "Code: 0f 1f 44 00 00 f3 90 <eb> fc 0f 1f 44 00 00"
    decode = decode_code(line, "x86_64", {"rip": 0xFFFFFFFFC0A0100E}, None, interrupted=True)
    assert decode.instruction == "jmp 0xffffffffc0a0100c"  # rip + 2 - 4
    listing = context_listing(decode)
    assert [(entry.text, entry.faulting) for entry in listing[-3:]] == [
        ("pause", False),
        ("jmp 5", True),
        ("nop dword ptr [rax + rax]", False),
    ]


def test_context_listing_thumb_mode() -> None:
    decode = decode_code(*load_case(DATA / "arm_thumb_null.txt"))
    listing = context_listing(decode)
    assert [entry.text for entry in listing if entry.faulting] == ["ldr r3, [r0]"]
    assert all(len(entry.data) == 2 for entry in listing)


def test_verdict_rules_named_and_ordered() -> None:
    """The verdict pipeline is data: unique names, traps first, the catch-alls last."""
    from analysis.decode import VERDICT_RULES

    names = [rule.name for rule in VERDICT_RULES]
    assert len(names) == len(set(names))
    assert names[0] == "trap"
    assert names.index("kasan-shadow") < names.index("non-canonical")
    assert names.index("null") < names.index("near-null") < names.index("pointer")
    assert names[-2:] == ["pointer", "register-unknown"]


S390_BLOCK = (
    "Krnl Code: 000003ff8025e0a6: e31020080004        lg      %r1,8(%r2)\n"
    "          >000003ff8025e0b0: e32010000004        lg      %r2,0(%r1)\n"
)


def test_s390_without_systemz_engine_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """Capstone builds without SystemZ keep the bytes and name the missing disassembler."""
    import capstone

    monkeypatch.delattr(capstone, "CS_ARCH_SYSZ", raising=False)
    got = decode_code(S390_BLOCK, "s390x", {"r1": 0}, 0)
    assert got.instruction is None
    assert got.error == "no disassembler for s390x code printed as 16-bit words"
    assert got.code_bytes == bytes.fromhex("e31020080004e32010000004") and got.fault_offset == 6


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (S390_BLOCK.replace("Code: 000003ff8025e0a6", "Code: >000003ff8025e0a6"), "more than one `>` marker"),
        (
            "Krnl Code: " + " ".join(f"{0x1000 + 2 * n:016x}: 07fe" for n in range(300)),
            "300 entries; longer than any Krnl Code: block",
        ),
    ],
    ids=["two-markers", "hostile-long"],
)
def test_s390_damaged_blocks_are_refused(text: str, error: str) -> None:
    got = decode_code(text, "s390x", {}, None)
    assert got.instruction is None and got.error == error
