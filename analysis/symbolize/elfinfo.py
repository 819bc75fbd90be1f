"""The one module that touches pyelftools: ELF symbols, build-ids, .text bytes and per-CU DWARF.

Everything leaves this module as plain typed tuples/dataclasses so the index and the lookups never
see a pyelftools object, and every pyelftools failure on bad input becomes a `DebuginfoError`
naming the file. Relocatable objects (kernel modules, `.ko.debug`) get a synthetic layout: each
allocated section is given a base address so functions in `.text`, `.text.unlikely` and
`.init.text` do not collide at address 0; DWARF is relocated against that same layout here
(pyelftools' own relocation uses bare section-relative symbol values, and would also apply the
millions of `--emit-relocs` entries a vmlinux carries, which an executable does not need).
"""

from __future__ import annotations

import contextlib
import io
import logging
import mmap
import posixpath
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, Literal, cast

from elftools.common.exceptions import ELFError, ELFParseError
from elftools.construct import ConstructError
from elftools.dwarf.die import DIE as _DIE
from elftools.dwarf.dwarfinfo import DebugSectionDescriptor
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection

from analysis.errors import DebuginfoError

__all__ = [
    "CuData",
    "ElfImage",
    "ElfSymbol",
    "LineRow",
    "Scope",
    "read_build_id",
]

log = logging.getLogger(__name__)

# Assembler-local and ARM mapping symbols: never what a kernel prints as a function.
_LOCAL_LABELS: tuple[str, ...] = (".L", "$x", "$d", "$a", "$t")

# DIEs whose children may hold code scopes. Types are not descended into: in C they hold only
# members, and C++ methods' concrete instances sit at CU level (DW_AT_specification).
_SCOPE_CONTAINERS: frozenset[str] = frozenset({"DW_TAG_lexical_block", "DW_TAG_namespace", "DW_TAG_module"})

_MAX_LINE = 0xFFFFFFFF  # DWARF line numbers are unsigned 32-bit in every consumer

STT_NOTYPE = 0
STT_FUNC = 2
SHF_ALLOC = 0x2
SHF_COMPRESSED = 0x800
SHF_EXECINSTR = 0x4

# Relocation types that can appear in DWARF sections of relocatable objects, by machine:
# type -> (byte width, pc-relative). Anything else in a .rela.debug_* section is refused.
RELOCATION_TYPES: dict[str, dict[int, tuple[int, bool]]] = {
    "EM_X86_64": {
        0: (0, False),  # R_X86_64_NONE
        1: (8, False),  # R_X86_64_64
        2: (4, True),  # R_X86_64_PC32
        10: (4, False),  # R_X86_64_32
        11: (4, False),  # R_X86_64_32S
        24: (8, True),  # R_X86_64_PC64
    },
    "EM_AARCH64": {
        0: (0, False),  # R_AARCH64_NONE
        257: (8, False),  # R_AARCH64_ABS64
        258: (4, False),  # R_AARCH64_ABS32
        261: (4, True),  # R_AARCH64_PREL32
    },
}

# Exceptions pyelftools (and its bundled construct) raise on malformed input.
_PARSE_ERRORS: tuple[type[BaseException], ...] = (
    ELFError,
    ELFParseError,
    ConstructError,
    struct.error,
    ValueError,
    KeyError,
    IndexError,
    AssertionError,
    TypeError,
    AttributeError,
    UnicodeDecodeError,
    RecursionError,
    EOFError,
)


@dataclass(frozen=True, slots=True)
class ElfSymbol:
    """A function symbol at its (synthetic, for ET_REL) address."""

    name: str
    address: int
    size: int
    section: str


@dataclass(frozen=True, slots=True)
class LineRow:
    """One line-table row covering [address, end)."""

    address: int
    end: int
    file: int  # index into CuData.files
    line: int


@dataclass(frozen=True, slots=True)
class Scope:
    """A concrete function (depth 0) or inlined call (depth >= 1) covering [low, high).

    `call_file`/`call_line` say where an inlined call sits in its caller (0/-1 for depth 0).
    """

    low: int
    high: int
    depth: int
    name: str
    call_file: int
    call_line: int


@dataclass(frozen=True, slots=True)
class CuData:
    """What the index keeps of one compile unit."""

    offset: int
    name: str
    files: tuple[str, ...]
    rows: tuple[LineRow, ...]
    scopes: tuple[Scope, ...]


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def read_build_id(path: str) -> str | None:
    """The GNU build-id of an ELF file as lowercase hex, or None when it has none."""
    with ElfImage(path) as image:
        return image.build_id


class _RelocatingELFFile(ELFFile):
    """ELFFile whose DWARF sections are relocated against `ElfImage`'s section layout."""

    image: ElfImage

    def _read_dwarf_section(self, section: Any, relocate_dwarf_sections: bool) -> DebugSectionDescriptor:
        stream: IO[bytes]
        if self["e_type"] == "ET_REL":
            data = bytearray(section.data())
            self.image._relocate(section, data)
            stream = io.BytesIO(bytes(data))
        elif int(section["sh_flags"]) & SHF_COMPRESSED or section["sh_type"] == "SHT_NOBITS":
            stream = io.BytesIO(section.data())
        else:
            # A window on the mapped file: a vmlinux's 400 MB of DWARF is paged in as touched,
            # not copied into the process.
            view = _SectionView(self.image._mapped(), int(section["sh_offset"]), int(section["sh_size"]))
            stream = cast(IO[bytes], view)
        size = stream.seek(0, io.SEEK_END)
        stream.seek(0)
        return DebugSectionDescriptor(
            stream=stream,
            name=section.name,
            global_offset=section["sh_offset"],
            size=size,
            address=section["sh_addr"],
        )


class _SectionView(io.RawIOBase):
    """A read-only, seekable stream over `[offset, offset + size)` of a memory-mapped file."""

    def __init__(self, mapped: mmap.mmap, offset: int, size: int) -> None:
        super().__init__()
        if offset < 0 or size < 0 or offset + size > len(mapped):
            raise ELFParseError(f"section at {offset}+{size} runs past the end of the file")
        self._map = mapped
        self._start = offset
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(base + offset, 0)
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        start = min(self._pos, self._size)
        stop = self._size if size is None or size < 0 else min(start + size, self._size)
        self._pos = stop
        return self._map[self._start + start : self._start + stop]

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class ElfImage:
    """An opened ELF file with the questions the symbolizer asks of it.

    Raises `DebuginfoError(path, reason)` for anything unreadable; use as a context manager.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._file: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed in close()
        except FileNotFoundError:
            raise DebuginfoError(path, "no such file") from None
        except IsADirectoryError:
            raise DebuginfoError(path, "is a directory") from None
        except OSError as exc:
            raise DebuginfoError(path, exc.strerror or str(exc)) from None
        try:
            head = self._file.read(4)
            if head != b"\x7fELF":
                raise DebuginfoError(path, "not an ELF file")
            self._file.seek(0)
            self._elf = _RelocatingELFFile(self._file)
            self._elf.image = self
            self.elf_type: str = str(self._elf["e_type"])
            self.machine: str = str(self._elf["e_machine"])
            self.address_size = 8 if self._elf.elfclass == 64 else 4
            self.little_endian: bool = bool(self._elf.little_endian)
            self._sections: list[Any] = list(self._elf.iter_sections())
            self.section_bases = self._layout()
        except DebuginfoError:
            self._file.close()
            raise
        except _PARSE_ERRORS as exc:
            self._file.close()
            raise DebuginfoError(path, f"corrupt ELF: {exc}") from None
        self._dwarf: Any = None
        self._map: mmap.mmap | None = None
        self._symbol_value_cache: dict[int, list[int]] = {}
        self._build_id: str | bool | None = False

    def __enter__(self) -> ElfImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._dwarf = None
        if self._map is not None:
            # BufferError: a caller still holds a view; the mapping goes with the last reference.
            with contextlib.suppress(BufferError):
                self._map.close()
            self._map = None
        self._file.close()

    def _mapped(self) -> mmap.mmap:
        if self._map is None:
            try:
                self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as exc:
                raise DebuginfoError(self.path, f"cannot map the file: {exc}") from None
        return self._map

    # ---- layout and symbols ------------------------------------------------------------------

    def _layout(self) -> dict[int, int]:
        """Section index -> load address: sh_addr, or for ET_REL a packed synthetic layout.

        Executable sections come first so a module's `.text` sits at 0 and its addresses equal the
        section offsets `addr2line -j .text` takes.
        """
        bases: dict[int, int] = {}
        if self.elf_type != "ET_REL":
            for index, section in enumerate(self._sections):
                bases[index] = int(section["sh_addr"])
            return bases
        cursor = 0
        alloc = [(i, s) for i, s in enumerate(self._sections) if int(s["sh_flags"]) & SHF_ALLOC]
        ordered = [p for p in alloc if int(p[1]["sh_flags"]) & SHF_EXECINSTR] + [
            p for p in alloc if not int(p[1]["sh_flags"]) & SHF_EXECINSTR
        ]
        for index, section in ordered:
            align = max(int(section["sh_addralign"]), 1)
            cursor = (cursor + align - 1) // align * align
            bases[index] = cursor
            cursor += int(section["sh_size"])
        return bases

    @property
    def build_id(self) -> str | None:
        """Lowercase hex of the first NT_GNU_BUILD_ID note, or None."""
        if self._build_id is False:
            self._build_id = self._find_build_id()
        return self._build_id if isinstance(self._build_id, str) else None

    def _find_build_id(self) -> str | None:
        try:
            for section in self._sections:
                if not isinstance(section, NoteSection):
                    continue
                for note in section.iter_notes():
                    if note["n_type"] == "NT_GNU_BUILD_ID" and _text(note["n_name"]) == "GNU":
                        return str(note["n_desc"]).lower()
        except _PARSE_ERRORS as exc:
            raise DebuginfoError(self.path, f"corrupt note section: {exc}") from None
        return None

    def modinfo(self) -> dict[str, str]:
        """A kernel module's .modinfo `key=value` strings (name, vermagic ...); empty for others."""
        out: dict[str, str] = {}
        for section in self._sections:
            if section.name != ".modinfo" or section["sh_type"] == "SHT_NOBITS":
                continue
            try:
                data = bytes(section.data())
            except _PARSE_ERRORS as exc:
                raise DebuginfoError(self.path, f"corrupt .modinfo: {exc}") from None
            for item in data.split(b"\0"):
                key, sep, value = item.decode("utf-8", "replace").partition("=")
                if sep and key not in out:
                    out[key] = value
        return out

    def function_symbols(self) -> list[ElfSymbol]:
        """Code symbols (STT_FUNC, and untyped assembler labels in executable sections) at their
        load address, sorted by address.

        The table is unpacked with `struct` rather than pyelftools' per-symbol parser: a vmlinux
        has ~150k symbols and this runs once per build-id on the cold path.
        """
        out: list[ElfSymbol] = []
        try:
            for section in self._sections:
                if section["sh_type"] != "SHT_SYMTAB" or section.name != ".symtab":
                    continue
                strtab = bytes(self._sections[int(section["sh_link"])].data())
                out.extend(self._code_symbols(bytes(section.data()), strtab))
        except DebuginfoError:
            raise
        except _PARSE_ERRORS as exc:
            raise DebuginfoError(self.path, f"corrupt symbol table: {exc}") from None
        out.sort(key=lambda s: (s.address, s.name))
        return out

    def _code_symbols(self, table: bytes, strtab: bytes) -> Iterator[ElfSymbol]:
        end = "<" if self.little_endian else ">"
        if self.address_size == 8:
            layout, names = struct.Struct(end + "IBBHQQ"), ("name", "info", "other", "shndx", "value", "size")
        else:
            layout, names = struct.Struct(end + "IIIBBH"), ("name", "value", "size", "info", "other", "shndx")
        field = {n: i for i, n in enumerate(names)}
        i_name, i_info, i_shndx = field["name"], field["info"], field["shndx"]
        i_value, i_size = field["value"], field["size"]
        relocatable = self.elf_type == "ET_REL"
        executable = {
            i for i in self.section_bases if int(self._sections[i]["sh_flags"]) & SHF_EXECINSTR
        }
        usable = len(table) // layout.size * layout.size
        for entry in layout.iter_unpack(table[:usable]):
            kind = entry[i_info] & 0xF
            shndx = entry[i_shndx]
            if kind not in (STT_NOTYPE, STT_FUNC) or shndx not in self.section_bases or shndx == 0:
                continue
            if kind == STT_NOTYPE and shndx not in executable:
                continue  # assembler labels in code count (asm_exc_*), data labels do not
            offset = entry[i_name]
            stop = strtab.find(b"\0", offset)
            if offset >= len(strtab) or stop < 0:
                raise DebuginfoError(self.path, f"symbol name offset {offset} outside the string table")
            name = strtab[offset:stop].decode("utf-8", "replace")
            if not name or name.startswith(_LOCAL_LABELS):
                continue
            value = int(entry[i_value])
            address = self.section_bases[shndx] + value if relocatable else value
            yield ElfSymbol(name, address, int(entry[i_size]), self._sections[shndx].name)

    def symbol_values(self, names: set[str]) -> dict[str, int]:
        """Link-time values of the named symbols (any type; the first definition of each)."""
        out: dict[str, int] = {}
        end = "<" if self.little_endian else ">"
        layout = struct.Struct(end + ("IBBHQQ" if self.address_size == 8 else "IIIBBH"))
        i_name, i_shndx, i_value = (0, 3, 4) if self.address_size == 8 else (0, 5, 1)
        try:
            for section in self._sections:
                if section["sh_type"] != "SHT_SYMTAB":
                    continue
                strtab = bytes(self._sections[int(section["sh_link"])].data())
                table = bytes(section.data())
                for entry in layout.iter_unpack(table[: len(table) // layout.size * layout.size]):
                    if entry[i_shndx] == 0:
                        continue  # undefined
                    offset = entry[i_name]
                    stop = strtab.find(b"\0", offset)
                    name = strtab[offset:stop].decode("utf-8", "replace") if 0 <= offset < stop else ""
                    if name in names and name not in out:
                        out[name] = int(entry[i_value])
        except _PARSE_ERRORS as exc:
            raise DebuginfoError(self.path, f"corrupt symbol table: {exc}") from None
        return out

    def struct_layout(self, anchor: int, name: str) -> dict[str, tuple[int, int]]:
        """Member -> (byte offset, byte size) of `struct name` as the CU covering code address
        `anchor` defines it; members of anonymous struct/union members are flattened in, and
        nested named struct members appear as `outer.inner`. DebuginfoError when not found."""
        dwarf = self._dwarfinfo()
        try:
            aranges = dwarf.get_aranges()
            cu_offset = aranges.cu_offset_at_addr(anchor) if aranges is not None else None
            if cu_offset is None:
                raise DebuginfoError(self.path, f"no compile unit covers 0x{anchor:x}")
            cu = dwarf.get_CU_at(cu_offset)
            for die in cu.get_top_DIE().iter_children():
                if (
                    die.tag == "DW_TAG_structure_type"
                    and "DW_AT_declaration" not in die.attributes
                    and _text(die.attributes["DW_AT_name"].value if "DW_AT_name" in die.attributes else b"") == name
                ):
                    out: dict[str, tuple[int, int]] = {}
                    self._members(die, 0, "", out, 0)
                    return out
        except DebuginfoError:
            raise
        except _PARSE_ERRORS as exc:
            raise DebuginfoError(self.path, f"corrupt DWARF for struct {name}: {exc}") from None
        finally:
            if self._dwarf is not None and "cu_offset" in locals() and cu_offset is not None:
                self._forget_cu(cu_offset)
        raise DebuginfoError(self.path, f"struct {name} is not defined in the CU at 0x{anchor:x}")

    def _members(self, die: Any, base: int, prefix: str, out: dict[str, tuple[int, int]], depth: int) -> None:
        if depth > 8:
            return  # nesting this deep is not a kernel struct
        for member in die.iter_children():
            if member.tag != "DW_TAG_member":
                continue
            attrs = member.attributes
            location = attrs.get("DW_AT_data_member_location")
            offset = base + (int(location.value) if location is not None and isinstance(location.value, int) else 0)
            target = member.get_DIE_from_attribute("DW_AT_type") if "DW_AT_type" in attrs else None
            target = _strip_qualifiers(target)
            size = _byte_size(target)
            if "DW_AT_name" not in attrs:
                if target is not None and target.tag in ("DW_TAG_structure_type", "DW_TAG_union_type"):
                    self._members(target, offset, prefix, out, depth + 1)
                continue
            full = prefix + _text(attrs["DW_AT_name"].value)
            out.setdefault(full, (offset, size))
            if target is not None and target.tag == "DW_TAG_structure_type" and depth < 2:
                self._members(target, offset, full + ".", out, depth + 1)

    def section_size(self, name: str) -> int:
        """Size of the named section, 0 when absent."""
        return sum(int(s["sh_size"]) for s in self._sections if s.name == name)

    def section_file_range(self, name: str) -> tuple[int, int] | None:
        """(file offset, size) of the named section, for tools that patch or copy it."""
        for section in self._sections:
            if section.name == name:
                return int(section["sh_offset"]), int(section["sh_size"])
        return None

    def allocated_sections(self) -> dict[str, int]:
        """Name -> load address of every allocated section (the ET_REL layout made visible)."""
        out: dict[str, int] = {}
        for index, base in self.section_bases.items():
            section = self._sections[index]
            if int(section["sh_flags"]) & SHF_ALLOC and section.name and section.name not in out:
                out[section.name] = base
        return out

    def section_of(self, address: int) -> tuple[str, int] | None:
        """(section name, offset in it) for a load address inside an allocated section."""
        for index, base in self.section_bases.items():
            section = self._sections[index]
            if not int(section["sh_flags"]) & SHF_ALLOC or section["sh_type"] == "SHT_NOBITS":
                continue
            if base <= address < base + int(section["sh_size"]):
                return section.name, address - base
        return None

    def read_code(self, address: int, size: int) -> bytes:
        """Bytes of an executable section at a load address (for disassembly); b'' if none there."""
        for index, base in self.section_bases.items():
            section = self._sections[index]
            if not int(section["sh_flags"]) & SHF_EXECINSTR or section["sh_type"] == "SHT_NOBITS":
                continue
            length = int(section["sh_size"])
            if base <= address < base + length:
                start = address - base
                end = min(start + size, length)
                try:
                    self._file.seek(int(section["sh_offset"]) + start)
                    return self._file.read(end - start)
                except OSError as exc:
                    raise DebuginfoError(self.path, f"cannot read {section.name}: {exc}") from None
        return b""

    # ---- DWARF -----------------------------------------------------------------------------

    def has_dwarf(self) -> bool:
        return any(s.name in (".debug_info", ".zdebug_info") for s in self._sections)

    def _dwarfinfo(self) -> Any:
        if self._dwarf is None:
            if not self.has_dwarf():
                raise DebuginfoError(self.path, "no DWARF debug information (.debug_info missing)")
            try:
                self._dwarf = self._elf.get_dwarf_info(relocate_dwarf_sections=True)
            except DebuginfoError:
                raise
            except _PARSE_ERRORS as exc:
                raise DebuginfoError(self.path, f"corrupt DWARF: {exc}") from None
        return self._dwarf

    def _relocate(self, section: Any, data: bytearray) -> None:
        """Apply the RELA entries that target `section` against the synthetic layout."""
        types = RELOCATION_TYPES.get(self.machine)
        target = self._sections.index(section) if section in self._sections else -1
        for rel in self._sections:
            if rel["sh_type"] not in ("SHT_RELA", "SHT_REL") or int(rel["sh_info"]) != target:
                continue
            if rel["sh_type"] == "SHT_REL" or types is None or self.address_size != 8:
                raise DebuginfoError(
                    self.path, f"unsupported relocations in {section.name} ({self.machine}, {rel['sh_type']})"
                )
            symtab = self._sections[int(rel["sh_link"])]
            values = self._symbol_values(symtab)
            raw = rel.data()
            fmt = "<QQq" if self.little_endian else ">QQq"
            for r_offset, r_info, addend in struct.iter_unpack(fmt, raw[: len(raw) // 24 * 24]):
                rtype = r_info & 0xFFFFFFFF
                sym = r_info >> 32
                width, pcrel = types.get(rtype, (-1, False))
                if width < 0:
                    raise DebuginfoError(self.path, f"unsupported relocation type {rtype} in {section.name}")
                if width == 0:
                    continue
                if sym >= len(values) or r_offset + width > len(data):
                    raise DebuginfoError(self.path, f"relocation out of range in {section.name}")
                value = values[sym] + addend - (r_offset if pcrel else 0)
                value &= (1 << (8 * width)) - 1
                data[r_offset : r_offset + width] = value.to_bytes(
                    width, "little" if self.little_endian else "big"
                )

    def _symbol_values(self, symtab: Any) -> list[int]:
        """Every symbol's value in the synthetic layout, by symbol index (relocations' S)."""
        key = int(symtab["sh_offset"])
        if key not in self._symbol_value_cache:
            values: list[int] = []
            for sym in symtab.iter_symbols():
                shndx = sym["st_shndx"]
                base = self.section_bases.get(shndx, 0) if isinstance(shndx, int) else 0
                values.append(base + int(sym["st_value"]))
            self._symbol_value_cache[key] = values
        return self._symbol_value_cache[key]

    def cu_ranges(self) -> list[tuple[int, int, int]]:
        """(low, high, cu_offset) address ranges of every compile unit, sorted.

        From .debug_aranges when present (cheap: no DIE is parsed), else from each CU's top DIE.
        """
        dwarf = self._dwarfinfo()
        out: list[tuple[int, int, int]] = []
        try:
            aranges = dwarf.get_aranges() if dwarf.has_debug_info else None
            if aranges is not None and aranges.entries:
                for entry in aranges.entries:
                    if entry.length > 0:
                        out.append((entry.begin_addr, entry.begin_addr + entry.length, entry.info_offset))
            else:
                for cu in dwarf.iter_CUs():
                    top = cu.get_top_DIE()
                    for low, high in self._die_ranges(top, cu):
                        out.append((low, high, cu.cu_offset))
        except DebuginfoError:
            raise
        except _PARSE_ERRORS as exc:
            raise DebuginfoError(self.path, f"corrupt DWARF address ranges: {exc}") from None
        out.sort()
        return out

    def cu_offsets(self) -> list[int]:
        """Offsets of every compile unit in .debug_info."""
        dwarf = self._dwarfinfo()
        try:
            offsets = [cu.cu_offset for cu in dwarf.iter_CUs()]
        except _PARSE_ERRORS as exc:
            raise DebuginfoError(self.path, f"corrupt .debug_info: {exc}") from None
        # iter_CUs caches every CU it parsed; a vmlinux has thousands, so drop them.
        self._dwarf = None
        return offsets

    def read_cu(self, cu_offset: int) -> CuData:
        """Line table and function/inline scopes of one compile unit."""
        dwarf = self._dwarfinfo()
        try:
            cu = dwarf.get_CU_at(cu_offset)
            top = cu.get_top_DIE()
            name = _text(top.attributes["DW_AT_name"].value) if "DW_AT_name" in top.attributes else ""
            files, rows = self._line_table(cu, top)
            scopes = self._scopes(cu, top)
        except DebuginfoError:
            raise
        except _PARSE_ERRORS as exc:
            raise DebuginfoError(self.path, f"corrupt DWARF in CU at 0x{cu_offset:x}: {exc}") from None
        finally:
            self._forget_cu(cu_offset)
        return CuData(cu_offset, name, tuple(files), tuple(rows), tuple(scopes))

    def _forget_cu(self, cu_offset: int) -> None:
        """Drop pyelftools' cached CU (and its DIEs): a long vmlinux session would hold them all."""
        dwarf = self._dwarf
        if dwarf is None:
            return
        offsets = getattr(dwarf, "_cu_offsets_map", None)
        cache = getattr(dwarf, "_cu_cache", None)
        if isinstance(offsets, list) and isinstance(cache, list) and cu_offset in offsets:
            i = offsets.index(cu_offset)
            del offsets[i]
            del cache[i]

    def _line_table(self, cu: Any, top: Any) -> tuple[list[str], list[LineRow]]:
        program = self._dwarf.line_program_for_CU(cu)
        if program is None:
            return [], []
        header = program.header
        version = int(header["version"])
        comp_dir = _text(top.attributes["DW_AT_comp_dir"].value) if "DW_AT_comp_dir" in top.attributes else None
        dirs = [_text(d) for d in header["include_directory"]]
        files: list[str] = []
        entries = header["file_entry"]
        # DWARF 5 numbers files from 0; earlier versions from 1 (index 0 unused).
        if version < 5:
            files.append("??")
        for entry in entries:
            files.append(_file_name(_text(entry.name), int(entry.dir_index), dirs, comp_dir, version))
        start, stop = int(program.program_start_offset), int(program.program_end_offset)
        program.stream.seek(start)
        code = program.stream.read(max(stop - start, 0))
        rows = _decode_line_program(
            code,
            min_inst_length=max(int(header["minimum_instruction_length"]), 1),
            line_base=int(header["line_base"]),
            line_range=int(header["line_range"]),
            opcode_base=int(header["opcode_base"]),
            opcode_lengths=[int(n) for n in header["standard_opcode_lengths"]],
            address_size=int(cu["address_size"]),
            little_endian=self.little_endian,
            files=files,
            version=version,
            dirs=dirs,
            comp_dir=comp_dir,
        )
        files = [f if f else "??" for f in files]
        return files, rows

    def _scopes(self, cu: Any, top: Any) -> list[Scope]:
        """Concrete functions (depth 0) and their inlined calls (depth = nesting).

        The DIE tree is walked by `_scan_scopes`, which decodes only abbreviation codes and
        attribute sizes and hands just the function/inline DIEs to pyelftools; a CU using a form
        it does not know is walked with pyelftools alone (`_walk_scopes`), same answer, slower.
        """
        try:
            return self._scan_scopes(cu)
        except _UnsupportedForm as exc:
            log.debug("DIE scanner fallback path=%s cu=0x%x form=%s", self.path, cu.cu_offset, exc)
            return list(self._walk_scopes(cu, top))

    def _scope_of(
        self, die: Any, cu: Any, depth: int, names: dict[int, str], out: list[Scope]
    ) -> tuple[bool, int]:
        """Append the scopes of a subprogram/inlined_subroutine DIE; returns (walk its children,
        depth for inlined children). A subprogram without code is skipped with its children."""
        ranges = self._die_ranges(die, cu)
        if not ranges:
            return die.tag != "DW_TAG_subprogram", depth
        name = self._die_name(die, names)
        if die.tag == "DW_TAG_inlined_subroutine":
            attrs = die.attributes
            call_file = int(attrs["DW_AT_call_file"].value) if "DW_AT_call_file" in attrs else 0
            call_line = int(attrs["DW_AT_call_line"].value) if "DW_AT_call_line" in attrs else 0
            level = depth
        else:
            call_file, call_line, level = 0, -1, 0
        out.extend(Scope(low, high, level, name, call_file, call_line) for low, high in ranges)
        return True, level + 1

    def _walk_scopes(self, cu: Any, top: Any) -> Iterator[Scope]:
        """pyelftools-only walk, without recursion so hostile nesting cannot blow the stack."""
        names: dict[int, str] = {}
        stack: list[tuple[Any, int]] = [(child, 0) for child in reversed(list(top.iter_children()))]
        while stack:
            die, depth = stack.pop()
            child_depth = depth
            if die.tag in _SCOPE_TAGS:
                found: list[Scope] = []
                walk, child_depth = self._scope_of(die, cu, depth, names, found)
                yield from found
                if not walk:
                    continue
            elif die.tag not in _SCOPE_CONTAINERS:
                continue
            if die.has_children:
                stack.extend((child, child_depth) for child in reversed(list(die.iter_children())))

    def _scan_scopes(self, cu: Any) -> list[Scope]:
        """Walk the CU's DIE bytes with its abbreviation table, skipping attribute values by
        their form's size; only function and inline DIEs are parsed (by pyelftools)."""
        dwarf = self._dwarf
        stream = dwarf.debug_info_sec.stream
        offset_size = 8 if cu.structs.dwarf_format == 64 else 4
        address_size = int(cu["address_size"])
        version = int(cu["version"])
        cu_offset = int(cu.cu_offset)
        first = int(cu.cu_die_offset)
        end = cu_offset + int(cu.size)
        stream.seek(first)
        data = stream.read(max(end - first, 0))
        table = cu.get_abbrev_table()
        plans: dict[int, _AbbrevPlan] = {}
        names: dict[int, str] = {}
        out: list[Scope] = []
        # Stack entries: (walk children for scopes?, depth given to inlined children).
        stack: list[tuple[bool, int]] = []
        pos, size = 0, len(data)
        while pos < size:
            die_offset = first + pos
            code, pos = _uleb(data, pos)
            if code == 0:
                if not stack:
                    break
                stack.pop()
                if not stack:
                    break
                continue
            plan = plans.get(code)
            if plan is None:
                plan = plans[code] = _AbbrevPlan.of(table.get_abbrev(code), address_size, offset_size, version)
            pos, sibling = plan.skip(data, pos)
            if not stack:  # the CU's top DIE
                if plan.has_children:
                    stack.append((True, 0))
                    continue
                break
            walk, depth = stack[-1]
            child: tuple[bool, int] = (False, depth)
            if walk:
                if plan.tag in _SCOPE_TAGS:
                    die = _DIE(cu=cu, stream=stream, offset=die_offset)
                    child = self._scope_of(die, cu, depth, names, out)
                elif plan.tag in _SCOPE_CONTAINERS:
                    child = (True, depth)
            if not plan.has_children:
                continue
            if not child[0] and sibling is not None and first + pos <= cu_offset + sibling <= end:
                pos = cu_offset + sibling - first  # skip the whole subtree
                continue
            stack.append(child)
        return out

    def _die_name(self, die: Any, names: dict[int, str]) -> str:
        """Linkage name, else name, following abstract_origin/specification like binutils.

        Names are cached by DIE offset: the same inline function appears hundreds of times in a
        CU, and its abstract instance is then parsed once.
        """
        visited: list[int] = []
        current = die
        value = "??"
        while current is not None and len(visited) < 16:
            if current.offset in names:
                value = names[current.offset]
                break
            visited.append(current.offset)
            attrs = current.attributes
            named = next((k for k in ("DW_AT_linkage_name", "DW_AT_MIPS_linkage_name", "DW_AT_name") if k in attrs), None)
            if named is not None:
                value = _text(attrs[named].value)
                break
            link = next((k for k in ("DW_AT_abstract_origin", "DW_AT_specification") if k in attrs), None)
            if link is None:
                break
            target = _reference_offset(current, attrs[link])
            if target is not None and target in names:
                value = names[target]
                break
            current = current.get_DIE_from_attribute(link)
        for offset in visited:
            names[offset] = value
        return value

    def _die_ranges(self, die: Any, cu: Any) -> list[tuple[int, int]]:
        attrs = die.attributes
        if "DW_AT_low_pc" in attrs and "DW_AT_high_pc" in attrs:
            low = int(attrs["DW_AT_low_pc"].value)
            high_attr = attrs["DW_AT_high_pc"]
            high = int(high_attr.value)
            if high_attr.form != "DW_FORM_addr":
                high += low
            return [(low, high)] if high > low else []
        if "DW_AT_ranges" not in attrs:
            return []
        rangelists = self._dwarf.range_lists()
        if rangelists is None:
            raise DebuginfoError(self.path, "DW_AT_ranges without a ranges section")
        entries = rangelists.get_range_list_at_offset(int(attrs["DW_AT_ranges"].value), cu=cu)
        top = cu.get_top_DIE()
        base = int(top.attributes["DW_AT_low_pc"].value) if "DW_AT_low_pc" in top.attributes else 0
        out: list[tuple[int, int]] = []
        for entry in entries:
            if hasattr(entry, "base_address"):
                base = int(entry.base_address)
                continue
            begin, end = int(entry.begin_offset), int(entry.end_offset)
            if not entry.is_absolute:
                begin += base
                end += base
            if end > begin:
                out.append((begin, end))
        return out


class _UnsupportedForm(Exception):
    """A DIE attribute form the byte scanner does not decode (pyelftools then walks the CU)."""


_SCOPE_TAGS: frozenset[str] = frozenset({"DW_TAG_subprogram", "DW_TAG_inlined_subroutine"})

# Attribute forms by how many bytes their value takes; see DWARF 5 section 7.5.6.
_FIXED_FORMS: dict[str, int] = {
    "DW_FORM_flag_present": 0, "DW_FORM_implicit_const": 0,
    "DW_FORM_data1": 1, "DW_FORM_ref1": 1, "DW_FORM_flag": 1, "DW_FORM_strx1": 1, "DW_FORM_addrx1": 1,
    "DW_FORM_data2": 2, "DW_FORM_ref2": 2, "DW_FORM_strx2": 2, "DW_FORM_addrx2": 2,
    "DW_FORM_strx3": 3, "DW_FORM_addrx3": 3,
    "DW_FORM_data4": 4, "DW_FORM_ref4": 4, "DW_FORM_strx4": 4, "DW_FORM_addrx4": 4, "DW_FORM_ref_sup4": 4,
    "DW_FORM_data8": 8, "DW_FORM_ref8": 8, "DW_FORM_ref_sig8": 8, "DW_FORM_ref_sup8": 8,
    "DW_FORM_data16": 16,
}
_LEB_FORMS: frozenset[str] = frozenset({
    "DW_FORM_udata", "DW_FORM_sdata", "DW_FORM_ref_udata", "DW_FORM_strx", "DW_FORM_addrx",
    "DW_FORM_loclistx", "DW_FORM_rnglistx", "DW_FORM_GNU_addr_index", "DW_FORM_GNU_str_index",
})
_OFFSET_FORMS: frozenset[str] = frozenset({
    "DW_FORM_strp", "DW_FORM_line_strp", "DW_FORM_sec_offset", "DW_FORM_strp_sup",
    "DW_FORM_GNU_ref_alt", "DW_FORM_GNU_strp_alt",
})
_BLOCK_LENGTH: dict[str, int] = {"DW_FORM_block1": 1, "DW_FORM_block2": 2, "DW_FORM_block4": 4}
_CU_RELATIVE_REFS: frozenset[str] = frozenset({
    "DW_FORM_ref1", "DW_FORM_ref2", "DW_FORM_ref4", "DW_FORM_ref8", "DW_FORM_ref_udata",
})
# Step kinds of an _AbbrevPlan.
_FIXED, _LEB, _CSTRING, _BLOCK_LEB, _BLOCK_FIXED = range(5)


@dataclass(frozen=True, slots=True)
class _AbbrevPlan:
    """How to step over one abbreviation's attributes, and where its DW_AT_sibling is."""

    tag: str
    has_children: bool
    steps: tuple[tuple[int, int], ...]  # (kind, size or length-prefix width)
    sibling: int  # index into steps of a fixed-size CU-relative DW_AT_sibling, or -1

    @classmethod
    def of(cls, abbrev: Any, address_size: int, offset_size: int, version: int) -> _AbbrevPlan:
        steps: list[tuple[int, int]] = []
        sibling = -1
        for name, form in abbrev.iter_attr_specs():
            if form in _FIXED_FORMS:
                if name == "DW_AT_sibling" and form in _CU_RELATIVE_REFS:
                    sibling = len(steps)
                steps.append((_FIXED, _FIXED_FORMS[form]))
            elif form in _LEB_FORMS:
                steps.append((_LEB, 0))
            elif form in _OFFSET_FORMS:
                steps.append((_FIXED, offset_size))
            elif form == "DW_FORM_addr":
                steps.append((_FIXED, address_size))
            elif form == "DW_FORM_ref_addr":
                steps.append((_FIXED, address_size if version <= 2 else offset_size))
            elif form == "DW_FORM_string":
                steps.append((_CSTRING, 0))
            elif form in ("DW_FORM_block", "DW_FORM_exprloc"):
                steps.append((_BLOCK_LEB, 0))
            elif form in _BLOCK_LENGTH:
                steps.append((_BLOCK_FIXED, _BLOCK_LENGTH[form]))
            else:
                raise _UnsupportedForm(str(form))
        return cls(str(abbrev["tag"]), bool(abbrev.has_children()), tuple(steps), sibling)

    def skip(self, data: bytes, pos: int) -> tuple[int, int | None]:
        """Position after this DIE's attributes, and its DW_AT_sibling (CU-relative) if any."""
        sibling: int | None = None
        size = len(data)
        for index, (kind, width) in enumerate(self.steps):
            if kind == _FIXED:
                if index == self.sibling:
                    sibling = int.from_bytes(data[pos : pos + width], "little")
                pos += width
            elif kind == _LEB:
                while pos < size and data[pos] & 0x80:
                    pos += 1
                pos += 1
            elif kind == _CSTRING:
                stop = data.find(b"\0", pos)
                if stop < 0:
                    raise ValueError("unterminated DW_FORM_string")
                pos = stop + 1
            elif kind == _BLOCK_LEB:
                length, pos = _uleb(data, pos)
                pos += length
            else:
                pos += width + int.from_bytes(data[pos : pos + width], "little")
            if pos > size:
                raise ValueError("DIE attributes run past the end of the compile unit")
        return pos, sibling


def _uleb(data: bytes, pos: int) -> tuple[int, int]:
    return _leb128(data, pos, where=".debug_info")


def _leb128(
    data: bytes, pos: int, *, where: str, signed: bool = False, error: type[ValueError] = ValueError
) -> tuple[int, int]:
    """(value, position after it) of the LEB128 number at `pos`; running off the end raises
    `error` naming `where`, since every caller reads untrusted debug info."""
    result = shift = 0
    size = len(data)
    while True:
        if pos >= size:
            raise error(f"truncated LEB128 in {where}")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return (result - (1 << shift) if signed and byte & 0x40 else result), pos


def _reference_offset(die: Any, attr: Any) -> int | None:
    """The .debug_info offset a reference attribute points at, without parsing the target."""
    if attr.form in _CU_RELATIVE_REFS:
        return int(attr.value) + int(die.cu.cu_offset)
    if attr.form == "DW_FORM_ref_addr":
        return int(attr.value)
    return None


_QUALIFIERS: frozenset[str] = frozenset({
    "DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type", "DW_TAG_restrict_type",
    "DW_TAG_atomic_type",
})


def _strip_qualifiers(die: Any) -> Any:
    for _ in range(16):
        if die is None or die.tag not in _QUALIFIERS or "DW_AT_type" not in die.attributes:
            return die
        die = die.get_DIE_from_attribute("DW_AT_type")
    return die


def _byte_size(die: Any) -> int:
    """Size in bytes of a type DIE (arrays: element size times the bounds); 0 when unknown."""
    if die is None:
        return 0
    if "DW_AT_byte_size" in die.attributes:
        return int(die.attributes["DW_AT_byte_size"].value)
    if die.tag == "DW_TAG_array_type" and "DW_AT_type" in die.attributes:
        count = 1
        for sub in die.iter_children():
            if sub.tag == "DW_TAG_subrange_type":
                if "DW_AT_count" in sub.attributes:
                    count *= int(sub.attributes["DW_AT_count"].value)
                elif "DW_AT_upper_bound" in sub.attributes:
                    count *= int(sub.attributes["DW_AT_upper_bound"].value) + 1
        return count * _byte_size(_strip_qualifiers(die.get_DIE_from_attribute("DW_AT_type")))
    return 0


def _file_name(name: str, dir_index: int, dirs: list[str], comp_dir: str | None, version: int) -> str:
    """A line-table file name joined the way binutils' addr2line joins it.

    An absolute name stands; otherwise its directory entry, and the CU's comp_dir in front of a
    relative directory (so a relative comp_dir yields a relative path, as the kernel's do).
    """
    if posixpath.isabs(name):
        return name
    index = dir_index if version >= 5 else dir_index - 1
    subdir = dirs[index] if 0 <= index < len(dirs) else None
    base = comp_dir if (subdir is None or not posixpath.isabs(subdir)) else None
    if base is None:
        base, subdir = subdir, None
    if base is None:
        return name
    if subdir:
        return f"{base}/{subdir}/{name}"
    return f"{base}/{name}"


class _LineProgramError(ValueError):
    """The line-number program runs past its end or holds an impossible value."""


def _decode_line_program(
    code: bytes,
    *,
    min_inst_length: int,
    line_base: int,
    line_range: int,
    opcode_base: int,
    opcode_lengths: list[int],
    address_size: int,
    little_endian: bool,
    files: list[str],
    version: int,
    dirs: list[str],
    comp_dir: str | None,
) -> list[LineRow]:
    """Run a DWARF 2-5 line-number program (the state machine of DWARF 5 section 6.2) and return
    its rows as address ranges.

    pyelftools decodes the same program into one object per row and copies its state each time;
    a vmlinux CU has tens of thousands of rows, so this plain loop over bytes is used instead
    (pyelftools still parses the header). Columns, is_stmt and the other flags are not kept:
    addr2line's answer does not depend on them.
    """
    if line_range <= 0:
        raise _LineProgramError("line_range 0 in line program header")
    order: Literal["little", "big"] = "little" if little_endian else "big"
    rows: list[LineRow] = []
    seq: list[tuple[int, int, int]] = []
    address, file, line = 0, 1, 1
    pos, end = 0, len(code)

    def uleb() -> int:
        nonlocal pos
        value, pos = _leb128(code, pos, where="line program", error=_LineProgramError)
        return value

    def sleb() -> int:
        nonlocal pos
        value, pos = _leb128(code, pos, where="line program", signed=True, error=_LineProgramError)
        return value

    const_add = ((255 - opcode_base) // line_range) * min_inst_length
    while pos < end:
        op = code[pos]
        pos += 1
        if op >= opcode_base:
            adjusted = op - opcode_base
            address += (adjusted // line_range) * min_inst_length
            line += line_base + adjusted % line_range
            seq.append((address, file, line))
        elif op == 0:
            length = uleb()
            if length == 0 or pos + length > end:
                raise _LineProgramError("extended opcode runs past the line program")
            sub, body, pos = code[pos], code[pos + 1 : pos + length], pos + length
            if sub == 1:  # DW_LNE_end_sequence
                seq.append((address, 0, 0))
                _close_sequence(seq, rows)
                seq = []
                address, file, line = 0, 1, 1
            elif sub == 2:  # DW_LNE_set_address
                if len(body) != address_size:
                    raise _LineProgramError("DW_LNE_set_address of the wrong size")
                address = int.from_bytes(body, order)
            elif sub == 3:  # DW_LNE_define_file (DWARF <= 4)
                name, _, rest = body.partition(b"\0")
                dir_index = _first_uleb(rest)
                files.append(_file_name(name.decode("utf-8", "replace"), dir_index, dirs, comp_dir, version))
            # DW_LNE_set_discriminator and vendor opcodes: nothing addr2line's answer needs.
        elif op == 1:  # DW_LNS_copy
            seq.append((address, file, line))
        elif op == 2:  # DW_LNS_advance_pc
            address += uleb() * min_inst_length
        elif op == 3:  # DW_LNS_advance_line
            line += sleb()
        elif op == 4:  # DW_LNS_set_file
            file = uleb()
        elif op == 8:  # DW_LNS_const_add_pc
            address += const_add
        elif op == 9:  # DW_LNS_fixed_advance_pc
            if pos + 2 > end:
                raise _LineProgramError("truncated DW_LNS_fixed_advance_pc")
            address += int.from_bytes(code[pos : pos + 2], order)
            pos += 2
        elif op in (6, 7, 10, 11):  # negate_stmt, basic_block, prologue_end, epilogue_begin
            pass
        else:  # set_column, set_isa and opcodes this reader does not know: skip their operands
            count = opcode_lengths[op - 1] if op - 1 < len(opcode_lengths) else 0
            for _ in range(count):
                uleb()
    return rows


def _first_uleb(data: bytes) -> int:
    result = shift = 0
    for byte in data:
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
    return result


def _close_sequence(seq: list[tuple[int, int, int]], rows: list[LineRow]) -> None:
    """Turn a sequence's rows into [address, next address) ranges; of rows sharing an address the
    last one wins (a zero-length row covers nothing)."""
    for i in range(len(seq) - 1):
        address, file, line = seq[i]
        end = seq[i + 1][0]
        if end > address:
            # A corrupt program can drive the line register out of range; 0 means "unknown".
            rows.append(LineRow(address, end, file, line if 0 <= line <= _MAX_LINE else 0))

