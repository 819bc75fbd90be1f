"""A compact on-disk index per build-id, so lookups never re-parse DWARF.

One SQLite file per build-id under the cache directory holds: ELF function symbols, compile-unit
address ranges (from .debug_aranges: cheap), and per compile unit its line table, its concrete
functions and their inlined-call ranges. Every lookup is a handful of B-tree probes (logarithmic).

Small files (modules, test binaries) are indexed whole at once. A debug vmlinux carries ~170 MB
of .debug_info that pyelftools needs minutes to walk, so by default its CUs are indexed lazily:
the first lookup that lands in a CU parses just that CU (tens of milliseconds) and stores it;
`index_all()` does the whole file for an index meant to be shipped.

Addresses are unsigned 64-bit; SQLite integers are signed, so rows store `address - 2**63`,
which keeps the order.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from analysis.errors import DebuginfoError
from analysis.symbolize.elfinfo import CuData, ElfImage

__all__ = [
    "EAGER_DEBUG_INFO_BYTES",
    "INDEX_FORMAT",
    "IndexedSymbol",
    "ScopeHit",
    "SymbolIndex",
    "default_cache_dir",
]

log = logging.getLogger(__name__)

INDEX_FORMAT = "crashfleet-symidx-1"
EAGER_DEBUG_INFO_BYTES = 32 * 1024 * 1024  # below this .debug_info size, index every CU up front
_BIAS = 1 << 63
_MAX_KEY = 1 << 65

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS symbols (address INTEGER NOT NULL, size INTEGER NOT NULL,
    name TEXT NOT NULL, section TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS symbols_address ON symbols (address);
CREATE INDEX IF NOT EXISTS symbols_name ON symbols (name);
CREATE TABLE IF NOT EXISTS cus (low INTEGER NOT NULL, high INTEGER NOT NULL, cu INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS cus_low ON cus (low);
CREATE TABLE IF NOT EXISTS cu_done (cu INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (cu INTEGER NOT NULL, idx INTEGER NOT NULL, path TEXT NOT NULL,
    PRIMARY KEY (cu, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lines (address INTEGER NOT NULL, end_address INTEGER NOT NULL,
    cu INTEGER NOT NULL, file INTEGER NOT NULL, line INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS lines_address ON lines (address);
CREATE TABLE IF NOT EXISTS funcs (id INTEGER PRIMARY KEY, low INTEGER NOT NULL, high INTEGER NOT NULL,
    cu INTEGER NOT NULL, name TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS funcs_low ON funcs (low);
CREATE TABLE IF NOT EXISTS inlines (func INTEGER NOT NULL, low INTEGER NOT NULL, high INTEGER NOT NULL,
    depth INTEGER NOT NULL, name TEXT NOT NULL, call_file INTEGER NOT NULL, call_line INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS inlines_func ON inlines (func, low);
"""


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/crashfleet/symbols, else ~/.cache/crashfleet/symbols."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "crashfleet" / "symbols"


@dataclass(frozen=True, slots=True)
class IndexedSymbol:
    name: str
    address: int
    size: int
    section: str


@dataclass(frozen=True, slots=True)
class ScopeHit:
    """One level of the function/inline chain at an address, outermost (depth 0) first."""

    depth: int
    name: str
    cu: int
    call_file: int
    call_line: int


def _s(address: int) -> int:
    return address - _BIAS


def _u(stored: int) -> int:
    return stored + _BIAS


class SymbolIndex:
    """The index of one ELF file, keyed by its build-id; see the module docstring.

    `open_or_build` is the entry point: it reuses a cache file whose recorded build-id matches,
    else builds one. The ELF path is kept to index further CUs lazily; if it is gone, lookups in
    CUs not yet indexed find no source lines (and say so once in the log).
    """

    def __init__(self, db_path: Path, elf_path: str | None) -> None:
        self.db_path = db_path
        self.elf_path = elf_path
        try:
            self._db = sqlite3.connect(str(db_path), timeout=30.0, isolation_level=None)
            self._db.executescript(_SCHEMA)
            self.meta: dict[str, str] = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise DebuginfoError(str(db_path), f"unreadable symbol index: {exc}") from None
        self._image: ElfImage | None = None
        self._missing_warned = False
        self._failed_cus: set[int] = set()

    # ---- construction ---------------------------------------------------------------------

    @classmethod
    def open_or_build(
        cls, elf_path: str, cache_dir: Path | None = None, eager: bool | None = None
    ) -> SymbolIndex:
        """The index for `elf_path`, built (once per build-id) under `cache_dir` if needed."""
        cache = cache_dir if cache_dir is not None else default_cache_dir()
        with ElfImage(elf_path) as image:
            build_id = image.build_id
            key = build_id or _path_key(elf_path)
            db_path = cache / key[:2] / f"{key[2:]}.symidx"
            if db_path.exists():
                try:
                    index = cls(db_path, elf_path)
                    if index.meta.get("format") == INDEX_FORMAT and index.meta.get("complete_symbols") == "1" and (
                        build_id is not None or index.meta.get("elf_size") == str(os.path.getsize(elf_path))
                    ):
                        stale = _stale(index.meta, elf_path, image.has_dwarf())
                        if stale is None:
                            return index
                        log.warning("symbol index stale, rebuilding path=%s elf=%s reason=%s", db_path, elf_path, stale)
                    index.close()
                except DebuginfoError as exc:
                    log.warning("symbol index unreadable, rebuilding path=%s reason=%s", db_path, exc.reason)
                db_path.unlink(missing_ok=True)
            tmp = db_path.with_suffix(f".tmp{os.getpid()}")
            try:
                db_path.parent.mkdir(parents=True, exist_ok=True)
                tmp.unlink(missing_ok=True)
            except OSError as exc:
                raise DebuginfoError(str(db_path.parent), f"symbol cache not writable: {exc.strerror or exc}") from None
            index = cls(tmp, elf_path)
            try:
                index._build(image, eager)
                index.close()
                os.replace(tmp, db_path)
            except BaseException as exc:
                index.close()
                tmp.unlink(missing_ok=True)
                if isinstance(exc, (OSError, sqlite3.Error)):
                    raise DebuginfoError(str(db_path), f"cannot write the symbol index: {exc}") from None
                raise
        return cls(db_path, elf_path)

    @classmethod
    def find(cls, build_id: str, cache_dir: Path | None = None) -> SymbolIndex | None:
        """The cached index of `build_id` if one is there and usable without searching for its
        ELF: complete (every CU indexed, e.g. `symbols index --full`), or its ELF still at the
        recorded path with the same build-id. None otherwise."""
        key = build_id.strip().lower()
        if len(key) < 3 or not all(c in "0123456789abcdef" for c in key):
            return None
        db_path = (cache_dir if cache_dir is not None else default_cache_dir()) / key[:2] / f"{key[2:]}.symidx"
        if not db_path.is_file():
            return None
        try:
            index = cls.open_existing(db_path)
        except DebuginfoError as exc:
            log.warning("symbol index unreadable path=%s reason=%s", exc.path, exc.reason)
            return None
        if index.build_id != key or index.meta.get("complete_symbols") != "1":
            index.close()
            return None
        elf = index.meta.get("elf_path")
        if elf and os.path.isfile(elf):
            stale = _stale(index.meta, elf, None)
            if stale is not None:  # the caller searches the debuginfo again; open_or_build rebuilds
                log.warning("symbol index stale, not used path=%s elf=%s reason=%s", db_path, elf, stale)
                index.close()
                return None
            index.elf_path = elf  # lazily indexed CUs and disassembly need it; its build-id is checked on use
            return index
        if index.meta.get("complete_dwarf") == "1" or index.meta.get("has_dwarf") == "0":
            return index
        index.close()
        return None

    @classmethod
    def verify_shipped(cls, db_path: Path) -> str:
        """Check a received index file (uploaded to a collector) before it is used: a sound SQLite
        file holding only this format's tables and indexes, complete, with a build-id. Returns
        the build-id; DebuginfoError names what is wrong. Nothing in the file is executed."""
        expected = _expected_objects()
        try:
            with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5.0)) as db:
                db.execute("PRAGMA trusted_schema = OFF")
                if db.execute("PRAGMA quick_check").fetchone() != ("ok",):
                    raise DebuginfoError(str(db_path), "corrupt SQLite file")
                found = set(db.execute("SELECT type, name FROM sqlite_master").fetchall())
                if not found <= expected or ("table", "meta") not in found:
                    raise DebuginfoError(str(db_path), "not a crashfleet symbol index (unexpected schema)")
                for table, columns in _TABLE_COLUMNS.items():
                    db.execute(f"SELECT {', '.join(columns)} FROM {table} LIMIT 1").fetchall()
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise DebuginfoError(str(db_path), f"not a crashfleet symbol index: {exc}") from None
        if meta.get("format") != INDEX_FORMAT:
            raise DebuginfoError(str(db_path), "not a crashfleet symbol index")
        build_id = str(meta.get("build_id") or "")
        if not build_id:
            raise DebuginfoError(str(db_path), "index of an ELF without a build-id")
        if meta.get("complete_symbols") != "1" or (
            meta.get("complete_dwarf") != "1" and meta.get("has_dwarf") != "0"
        ):
            raise DebuginfoError(str(db_path), "index is not complete (build it with `symbols index --full`)")
        return build_id

    @classmethod
    def open_existing(cls, db_path: Path, elf_path: str | None = None) -> SymbolIndex:
        """Open an index file (e.g. one uploaded without its ELF); refuse foreign files."""
        if not db_path.is_file():
            raise DebuginfoError(str(db_path), "no such symbol index")
        index = cls(db_path, elf_path)
        if index.meta.get("format") != INDEX_FORMAT:
            index.close()
            raise DebuginfoError(str(db_path), "not a crashfleet symbol index")
        return index

    def _build(self, image: ElfImage, eager: bool | None) -> None:
        started = time.monotonic()
        symbols = image.function_symbols()
        has_dwarf = image.has_dwarf()
        cu_ranges: list[tuple[int, int, int]] = []
        if has_dwarf:
            try:
                cu_ranges = image.cu_ranges()
            except DebuginfoError as exc:
                # Symbols still give symbol+offset; the CUs can still be indexed whole (eager).
                log.warning("compile unit ranges unreadable path=%s reason=%s", exc.path, exc.reason)
                self._note_error(exc.reason)
        if eager is None:
            eager = image.section_size(".debug_info") <= EAGER_DEBUG_INFO_BYTES
        layout = image.allocated_sections()
        with self._transaction():
            self._db.executemany(
                "INSERT INTO symbols VALUES (?, ?, ?, ?)",
                ((_s(s.address), s.size, s.name, s.section) for s in symbols),
            )
            self._db.executemany("INSERT INTO cus VALUES (?, ?, ?)", ((_s(lo), _s(hi), cu) for lo, hi, cu in cu_ranges))
            meta = {
                "format": INDEX_FORMAT,
                "build_id": image.build_id or "",
                "elf_path": os.path.abspath(image.path),
                "elf_size": str(os.path.getsize(image.path)),
                "elf_mtime_ns": str(os.stat(image.path).st_mtime_ns),
                "elf_type": image.elf_type,
                "machine": image.machine,
                "has_dwarf": "1" if has_dwarf else "0",
                "sections": json.dumps(layout, sort_keys=True),
                "complete_symbols": "1",
            }
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
        self.meta.update(meta)
        if eager and has_dwarf:
            self._image = image
            try:
                self.index_all()
            finally:
                self._image = None
        log.info(
            "symbol index built path=%s build_id=%s symbols=%d cu_ranges=%d eager=%s seconds=%.2f",
            image.path, image.build_id, len(symbols), len(cu_ranges), eager, time.monotonic() - started,
        )

    def index_all(self, budget_seconds: float | None = None) -> tuple[int, int]:
        """Index every compile unit not yet indexed, stopping after `budget_seconds` if given.

        Returns (compile units now indexed, compile units in the file).
        """
        image = self._elf()
        if image is None:
            raise DebuginfoError(self.elf_path or str(self.db_path), "the ELF file is needed to index its DWARF")
        done = {row[0] for row in self._db.execute("SELECT cu FROM cu_done")}
        try:
            offsets = image.cu_offsets()
        except DebuginfoError as exc:
            log.warning("compile units unreadable path=%s reason=%s", exc.path, exc.reason)
            self._note_error(exc.reason)
            return len(done), len(done)
        deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
        finished = True
        for offset in offsets:
            if offset in done:
                continue
            if deadline is not None and time.monotonic() > deadline:
                finished = False
                break
            try:
                self._store_cu(image.read_cu(offset))
            except DebuginfoError as exc:
                log.warning("compile unit unreadable path=%s cu=0x%x reason=%s", exc.path, offset, exc.reason)
                self._note_error(exc.reason)
                self._failed_cus.add(offset)
                continue
            done.add(offset)
        if finished:
            with self._transaction():
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('complete_dwarf', '1')")
            self.meta["complete_dwarf"] = "1"
        return len(done), len(offsets)

    def _note_error(self, reason: str) -> None:
        """Keep the first DWARF problem in the index, so `symbols index` can report it."""
        if "dwarf_error" in self.meta:
            return
        with self._transaction():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('dwarf_error', ?)", (reason,))
        self.meta["dwarf_error"] = reason

    @property
    def dwarf_error(self) -> str | None:
        """The first DWARF problem met while indexing, if any (lookups there give no source)."""
        return self.meta.get("dwarf_error")

    def _store_cu(self, cu: CuData) -> None:
        with self._transaction():
            if self._db.execute("SELECT 1 FROM cu_done WHERE cu = ?", (cu.offset,)).fetchone():
                return  # another process indexed it meanwhile
            self._db.executemany(
                "INSERT INTO files VALUES (?, ?, ?)", ((cu.offset, i, p) for i, p in enumerate(cu.files))
            )
            self._db.executemany(
                "INSERT INTO lines VALUES (?, ?, ?, ?, ?)",
                ((_s(r.address), _s(r.end), cu.offset, r.file, r.line) for r in cu.rows),
            )
            funcs = sorted((s for s in cu.scopes if s.depth == 0), key=lambda s: s.low)
            func_ids: list[tuple[int, int, int]] = []
            for scope in funcs:
                cur = self._db.execute(
                    "INSERT INTO funcs (low, high, cu, name) VALUES (?, ?, ?, ?)",
                    (_s(scope.low), _s(scope.high), cu.offset, scope.name),
                )
                func_ids.append((scope.low, scope.high, int(cur.lastrowid or 0)))
            rows = []
            for scope in cu.scopes:
                if scope.depth == 0:
                    continue
                owner = _containing(func_ids, scope.low)
                if owner is not None:
                    rows.append((owner, _s(scope.low), _s(scope.high), scope.depth, scope.name,
                                 scope.call_file, scope.call_line))
            self._db.executemany("INSERT INTO inlines VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("INSERT INTO cu_done VALUES (?, ?)", (cu.offset, cu.name))

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def _elf(self) -> ElfImage | None:
        if self._image is not None:
            return self._image
        if not self.elf_path or not os.path.isfile(self.elf_path):
            return None
        image = ElfImage(self.elf_path)
        recorded = self.meta.get("build_id") or None
        if recorded is not None and image.build_id != recorded:
            image.close()
            raise DebuginfoError(
                self.elf_path, f"build-id {image.build_id} does not match the index's {recorded}"
            )
        self._image = image
        return image

    def close(self) -> None:
        if self._image is not None:
            self._image.close()
            self._image = None
        self._db.close()

    def __enter__(self) -> SymbolIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- queries --------------------------------------------------------------------------

    @property
    def build_id(self) -> str | None:
        return self.meta.get("build_id") or None

    def section_base(self, section: str) -> int | None:
        layout: dict[str, int] = json.loads(self.meta.get("sections", "{}"))
        return layout.get(section)

    def symbols_named(self, name: str) -> list[IndexedSymbol]:
        rows = self._db.execute(
            "SELECT name, address, size, section FROM symbols WHERE name = ? ORDER BY address", (name,)
        ).fetchall()
        return [IndexedSymbol(n, _u(a), s, sec) for n, a, s, sec in rows]

    def all_symbols(self) -> list[IndexedSymbol]:
        """Every code symbol, by address (for benchmarks and `symbols lookup --list`)."""
        rows = self._db.execute("SELECT name, address, size, section FROM symbols ORDER BY address").fetchall()
        return [IndexedSymbol(n, _u(a), s, sec) for n, a, s, sec in rows]

    def symbol_at(self, address: int) -> IndexedSymbol | None:
        """The code symbol containing `address`; an unsized one (an assembler label) when it is the
        nearest below."""
        rows = self._db.execute(
            "SELECT name, address, size, section FROM symbols WHERE address <= ? ORDER BY address DESC LIMIT 8",
            (_s(address),),
        ).fetchall()
        for i, (n, a, s, sec) in enumerate(rows):
            if (s == 0 and i == 0) or _u(a) <= address < _u(a) + s:
                return IndexedSymbol(n, _u(a), s, sec)
        return None

    def symbol_below(self, address: int) -> IndexedSymbol | None:
        """The nearest code symbol at or below `address`, whatever its size: what binutils names
        a line row after it (the alignment padding a function's last line row stretches over)."""
        row = self._db.execute(
            "SELECT name, address, size, section FROM symbols WHERE address <= ? ORDER BY address DESC LIMIT 1",
            (_s(address),),
        ).fetchone()
        return IndexedSymbol(row[0], _u(row[1]), row[2], row[3]) if row else None

    def ensure_cu(self, address: int) -> int | None:
        """Make sure the CU covering `address` is indexed; its offset, or None if no CU covers it."""
        row = self._db.execute(
            "SELECT low, high, cu FROM cus WHERE low <= ? ORDER BY low DESC LIMIT 1", (_s(address),)
        ).fetchone()
        if row is None or _u(row[1]) <= address:
            return None
        cu = int(row[2])
        if self._db.execute("SELECT 1 FROM cu_done WHERE cu = ?", (cu,)).fetchone():
            return cu
        if cu in self._failed_cus or self.meta.get("complete_dwarf") == "1":
            return None  # unreadable: already reported when indexing
        try:
            image = self._elf()
        except DebuginfoError as exc:
            if not self._missing_warned:
                log.warning("debuginfo file changed, not used path=%s reason=%s", exc.path, exc.reason)
                self._missing_warned = True
            return None
        if image is None:
            if not self._missing_warned:
                log.warning(
                    "debuginfo file gone, cannot index further compile units path=%s build_id=%s",
                    self.elf_path, self.build_id,
                )
                self._missing_warned = True
            return None
        try:
            self._store_cu(image.read_cu(cu))
        except DebuginfoError as exc:
            self._failed_cus.add(cu)
            log.warning("compile unit unreadable path=%s cu=0x%x reason=%s", exc.path, cu, exc.reason)
            self._note_error(exc.reason)
            return None
        except sqlite3.Error as exc:  # read-only or full cache: answer without storing next time
            self._failed_cus.add(cu)
            log.warning("symbol index not writable path=%s cu=0x%x reason=%s", self.db_path, cu, exc)
            return None
        return cu

    def line_at(self, address: int) -> tuple[str, int] | None:
        """(file, line) of the line-table row covering `address`."""
        row = self._db.execute(
            "SELECT end_address, cu, file, line FROM lines WHERE address <= ? ORDER BY address DESC LIMIT 1",
            (_s(address),),
        ).fetchone()
        if row is None or _u(row[0]) <= address:
            return None
        return self.file_name(int(row[1]), int(row[2])), int(row[3])

    def file_name(self, cu: int, index: int) -> str:
        row = self._db.execute("SELECT path FROM files WHERE cu = ? AND idx = ?", (cu, index)).fetchone()
        return str(row[0]) if row else "??"

    def scopes_at(self, address: int) -> list[ScopeHit]:
        """The concrete function and inlined calls covering `address`, outermost first."""
        candidates = self._db.execute(
            "SELECT id, low, high, cu, name FROM funcs WHERE low <= ? ORDER BY low DESC LIMIT 4",
            (_s(address),),
        ).fetchall()
        for func_id, low, high, cu, name in candidates:
            if not _u(low) <= address < _u(high):
                continue
            hits = [ScopeHit(0, str(name), int(cu), 0, 0)]
            for depth, iname, call_file, call_line in self._db.execute(
                "SELECT depth, name, call_file, call_line FROM inlines "
                "WHERE func = ? AND low <= ? AND high > ? ORDER BY depth",
                (func_id, _s(address), _s(address)),
            ):
                hits.append(ScopeHit(int(depth), str(iname), int(cu), int(call_file), int(call_line)))
            return hits
        return []

    def stats(self) -> dict[str, int]:
        """Row counts, for `crashfleet symbols index` and the benchmark."""
        out: dict[str, int] = {}
        for table in ("symbols", "cus", "cu_done", "lines", "funcs", "inlines"):
            out[table] = int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        return out


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT/ROLLBACK, so concurrent indexers serialize on the write lock."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")


# Columns every query of this module reads, by table (a shipped index must have them all).
_TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "meta": ("key", "value"),
    "symbols": ("address", "size", "name", "section"),
    "cus": ("low", "high", "cu"),
    "cu_done": ("cu", "name"),
    "files": ("cu", "idx", "path"),
    "lines": ("address", "end_address", "cu", "file", "line"),
    "funcs": ("id", "low", "high", "cu", "name"),
    "inlines": ("func", "low", "high", "depth", "name", "call_file", "call_line"),
}


def _expected_objects() -> set[tuple[str, str]]:
    """(type, name) of every schema object `_SCHEMA` creates, SQLite's automatic indexes included."""
    with contextlib.closing(sqlite3.connect(":memory:")) as db:
        db.executescript(_SCHEMA)
        return set(db.execute("SELECT type, name FROM sqlite_master").fetchall())


def _containing(funcs: list[tuple[int, int, int]], address: int) -> int | None:
    """Id of the function range (sorted by low) containing `address`; functions rarely nest, so
    only a few ranges below it are worth checking."""
    i = bisect.bisect_right(funcs, (address, _MAX_KEY, 0)) - 1
    for low, high, fid in reversed(funcs[max(0, i - 7) : i + 1]):
        if low <= address < high:
            return fid
    return None


def _stale(meta: dict[str, str], elf_path: str, has_dwarf: bool | None) -> str | None:
    """Why an index no longer describes the file at `elf_path` (None: it still does).

    The index records the size and modification time of what it indexed: the same path with
    another size or time was rebuilt or replaced (a module rebuilt without a build-id, a package
    reinstalled), and an index made from a stripped file is stale once that path has DWARF.
    Indexes from before the time was recorded are judged by size alone.
    """
    try:
        st = os.stat(elf_path)
    except OSError:
        return None  # nothing to compare with: the recorded facts stand
    if meta.get("elf_path") == os.path.abspath(elf_path):
        if meta.get("elf_size") not in (None, str(st.st_size)):
            return f"size changed ({meta.get('elf_size')} -> {st.st_size} bytes) since it was indexed"
        if meta.get("elf_mtime_ns") not in (None, str(st.st_mtime_ns)):
            return "modified since it was indexed"
    if has_dwarf and meta.get("has_dwarf") == "0":
        return "indexed from a copy without DWARF; this file has DWARF"
    return None


def _path_key(path: str) -> str:
    """Cache key for an ELF without a build-id: a hash of its absolute path (size checked on use)."""
    return "nobuildid-" + hashlib.sha1(os.path.abspath(path).encode()).hexdigest()
