"""crash's `dis -rl` view: the faulting function disassembled from its start up to the faulting
instruction, each run of instructions under the source line it came from.

Bytes come from the debug ELF's own .text (capstone decodes them), so this is the code as built,
not as patched at run time (alternatives, static keys and ftrace's nops look as the compiler left
them). In a module (ET_REL) call targets are not relocated and show as the next instruction.
"""

from __future__ import annotations

from dataclasses import dataclass

from analysis.errors import DebuginfoError
from analysis.model import SourceLocation
from analysis.symbolize.elfinfo import ElfImage
from analysis.symbolize.lookup import Symbolizer

__all__ = ["DisasmLine", "disassemble_to", "render_dis_rl"]

# capstone (arch, mode) by ELF machine; the ELFs a kernel crash comes with.
CAPSTONE_TARGETS: dict[str, tuple[str, str]] = {
    "EM_X86_64": ("CS_ARCH_X86", "CS_MODE_64"),
    "EM_386": ("CS_ARCH_X86", "CS_MODE_32"),
    "EM_AARCH64": ("CS_ARCH_ARM64", "CS_MODE_ARM"),
}
MAX_FUNCTION_BYTES = 1 << 20  # a "function" bigger than this is a broken symbol table


@dataclass(frozen=True, slots=True)
class DisasmLine:
    """One instruction with its offset in the function and its innermost source location."""

    address: int
    offset: int
    text: str
    source: SourceLocation | None
    faulting: bool


def disassemble_to(symbolizer: Symbolizer, function: str, offset: int, size: int | None = None) -> list[DisasmLine]:
    """Instructions of `function` from its start through the one containing `offset`.

    Raises DebuginfoError when the symbol or its code is not there (index without its ELF, wrong
    offset, unsupported architecture).
    """
    import capstone  # heavy import, only when a disassembly is asked for

    elf_path = symbolizer.index.elf_path or "?"
    symbol = symbolizer.resolve_symbol(function, size)
    if symbol is None:
        raise DebuginfoError(elf_path, f"no unambiguous symbol {function}")
    length = max(symbol.size, offset + 16)
    if offset < 0 or length > MAX_FUNCTION_BYTES:
        raise DebuginfoError(elf_path, f"offset 0x{offset:x} does not fit {function}")
    with ElfImage(elf_path) as image:
        if image.build_id != symbolizer.build_id:
            raise DebuginfoError(elf_path, "the ELF beside the index is of another build")
        target = CAPSTONE_TARGETS.get(image.machine)
        if target is None:
            raise DebuginfoError(elf_path, f"no disassembler for {image.machine}")
        code = image.read_code(symbol.address, length)
    if len(code) <= offset:
        raise DebuginfoError(elf_path, f"{function}+0x{offset:x} is outside the code section")
    md = capstone.Cs(getattr(capstone, target[0]), getattr(capstone, target[1]))
    md.syntax = capstone.CS_OPT_SYNTAX_INTEL if target[0] == "CS_ARCH_X86" else md.syntax
    out: list[DisasmLine] = []
    for insn in md.disasm(code, symbol.address):
        rel = int(insn.address) - symbol.address
        if rel > offset:
            break
        source = symbolizer.lookup(int(insn.address))
        text = f"{insn.mnemonic} {insn.op_str}".strip()
        contains = rel <= offset < rel + int(insn.size)
        out.append(DisasmLine(int(insn.address), rel, text, source[0] if source else None, contains))
    if not out or not out[-1].faulting:
        raise DebuginfoError(elf_path, f"{function}+0x{offset:x} does not decode to an instruction")
    return out


def render_dis_rl(lines: list[DisasmLine], function: str) -> list[str]:
    """Text like crash's `dis -rl`: a `file: line` header whenever the source line changes."""
    out: list[str] = []
    last: tuple[str, int] | None = None
    for item in lines:
        where = (item.source.file, item.source.line) if item.source else ("??", 0)
        if where != last:
            out.append(f"{where[0]}: {where[1]}")
            last = where
        marker = "  <-- faulting instruction" if item.faulting else ""
        out.append(f"  {function}+0x{item.offset:x}:  {item.text}{marker}")
    return out
