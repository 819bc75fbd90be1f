"""Addresses and `function+offset` to source lines with inline chains, like `addr2line -f -i`.

The kernel prints the RIP as the faulting instruction itself and call-trace entries as return
addresses; a return address belongs to the instruction after the call, so trace entries are
looked up at offset - 1 (what the kernel's scripts/decode_stacktrace.sh does).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from analysis.errors import DebuginfoError
from analysis.model import SourceLocation
from analysis.symbolize.index import IndexedSymbol, SymbolIndex

__all__ = ["SourceLocation", "Symbolizer"]

log = logging.getLogger(__name__)

# The kernel prints a symbol's size as the distance to the next kallsyms symbol, which is the ELF
# st_size rounded up to the function alignment (plus padding). A candidate whose st_size is within
# this slack below the printed size is taken to be the one the kernel meant.
SIZE_SLACK = 64


class Symbolizer:
    """Looks addresses up in one ELF's index (vmlinux, or one module).

    `lookup(address)` takes a load address in the ELF's own address space (link address for a
    vmlinux; the synthetic section layout for a module, see `address_of`).
    """

    def __init__(self, index: SymbolIndex, name: str | None = None) -> None:
        self.index = index
        self.name = name

    @classmethod
    def open(
        cls, elf_path: str, cache_dir: Path | None = None, eager: bool | None = None, name: str | None = None
    ) -> Symbolizer:
        """Open (building once per build-id) the index of `elf_path`; DebuginfoError if unreadable."""
        return cls(SymbolIndex.open_or_build(elf_path, cache_dir=cache_dir, eager=eager), name=name)

    @property
    def build_id(self) -> str | None:
        return self.index.build_id

    def close(self) -> None:
        self.index.close()

    def __enter__(self) -> Symbolizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lookup(self, address: int) -> list[SourceLocation]:
        """Source locations at `address`, innermost first, as `addr2line -f -i -e ELF address`.

        Empty when no DWARF covers the address (the caller keeps symbol+offset). An index file
        that breaks under us is a DebuginfoError naming it.
        """
        try:
            return self._lookup(address)
        except sqlite3.Error as exc:
            raise DebuginfoError(str(self.index.db_path), f"symbol index unreadable: {exc}") from None

    def _lookup(self, address: int) -> list[SourceLocation]:
        self.index.ensure_cu(address)
        line = self.index.line_at(address)
        scopes = self.index.scopes_at(address)
        if not scopes:
            if line is None:
                return []
            # Assembly has line rows but no DWARF functions; name it from the symbol table, as
            # binutils does (asm_exc_invalid_op, entry_SYSCALL_64_after_hwframe ...). So has the
            # padding after a function, which its last line row covers: binutils names the
            # function before it, past its size.
            symbol = self.index.symbol_at(address) or self.index.symbol_below(address)
            return [SourceLocation(symbol.name if symbol else "??", line[0], line[1])]
        file, lineno = line if line is not None else ("??", 0)
        out = [SourceLocation(scopes[-1].name, file, lineno)]
        for inner in range(len(scopes) - 1, 0, -1):
            call = scopes[inner]
            caller = scopes[inner - 1]
            out.append(SourceLocation(caller.name, self.index.file_name(call.cu, call.call_file), call.call_line))
        return out

    def resolve_symbol(self, function: str, size: int | None = None) -> IndexedSymbol | None:
        """The ELF symbol the kernel meant by `function` (and its printed size, to tell apart
        same-named static functions); None when absent or ambiguous."""
        try:
            candidates = self.index.symbols_named(function)
        except sqlite3.Error as exc:
            raise DebuginfoError(str(self.index.db_path), f"symbol index unreadable: {exc}") from None
        if size is not None and candidates:
            fitting = [c for c in candidates if c.size == 0 or c.size <= size < c.size + SIZE_SLACK]
            if not fitting:
                log.warning(
                    "symbol size does not fit this build, not symbolized function=%s printed=0x%x elf=%s "
                    "elf_sizes=%s", function, size, self.index.elf_path,
                    ",".join(f"0x{c.size:x}" for c in candidates),
                )
                return None
            exact = [c for c in fitting if c.size == size]
            candidates = exact if len(exact) == 1 else fitting
        if len(candidates) > 1:
            first = candidates[0].address
            if all(c.address == first for c in candidates):
                return candidates[0]
            log.warning(
                "ambiguous symbol, not symbolized function=%s candidates=%d elf=%s",
                function, len(candidates), self.index.elf_path,
            )
            return None
        return candidates[0] if candidates else None

    def address_of(self, function: str, offset: int, size: int | None = None) -> int | None:
        """Load address of `function+offset` in this ELF, or None (unknown symbol, offset past it)."""
        symbol = self.resolve_symbol(function, size)
        if symbol is None:
            return None
        limit = max(symbol.size, size or 0)  # the kernel's size includes the padding after it
        if offset < 0 or (limit and offset >= limit):
            return None
        return symbol.address + offset

    def symbolize_frame(
        self, function: str, offset: int | None, is_return_address: bool, size: int | None = None
    ) -> list[SourceLocation]:
        """Source locations for a printed `function+offset/size`: the RIP at its offset, a call-trace
        return address at offset - 1."""
        if offset is None:
            return []
        if is_return_address and offset > 0:
            offset -= 1
        address = self.address_of(function, offset, size)
        if address is None:
            return []
        return self.lookup(address)

    def symbolize_address(
        self, runtime_address: int, kaslr_offset: int = 0, is_return_address: bool = False
    ) -> list[SourceLocation]:
        """Source locations for a raw runtime address of a vmlinux, less the KASLR slide."""
        address = runtime_address - kaslr_offset - (1 if is_return_address else 0)
        if address < 0:
            raise DebuginfoError(self.index.elf_path or "vmlinux", f"address 0x{runtime_address:x} below the slide")
        return self.lookup(address)
