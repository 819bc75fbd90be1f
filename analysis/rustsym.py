"""Rust v0 symbol names (`_RNvMs3_NtCs..._11rust_binder7processNtB5_7Process10update_ref`) made readable.

The kernel prints Rust frames with their mangled v0 names (RFC 2603). Titles and guilty
frames need the path a developer knows (`<rust_binder::process::Process>::update_ref`), and
the generic-frame lists need it to recognize `core::panicking::panic_fmt`. This is a small
recursive-descent reader of the grammar; crate disambiguators and generic arguments are
dropped, as in the kernel's own `{:#}` display. Any symbol it cannot read is returned
unchanged, so a stack never loses a frame to it.
"""

from __future__ import annotations

__all__ = ["demangle_rust"]

_MAX_DEPTH = 48  # nesting deeper than this is not a symbol a compiler emitted
_MAX_CHARS = 1024

_BASIC = {
    "a": "i8", "b": "bool", "c": "char", "d": "f64", "e": "str", "f": "f32", "h": "u8", "i": "isize",
    "j": "usize", "l": "i32", "m": "u32", "n": "i128", "o": "u128", "s": "i16", "t": "u16", "u": "()",
    "v": "...", "x": "i64", "y": "u64", "z": "!", "p": "_",
}  # fmt: skip
_NAMESPACES = {"C": "closure", "S": "shim"}


class _Malformed(Exception):
    """The text is not a v0 symbol we can read."""


class _Reader:
    def __init__(self, text: str) -> None:
        self.s = text
        self.pos = 0
        self.depth = 0

    def peek(self) -> str:
        return self.s[self.pos] if self.pos < len(self.s) else ""

    def next(self) -> str:
        ch = self.peek()
        if not ch:
            raise _Malformed("unexpected end")
        self.pos += 1
        return ch

    def eat(self, ch: str) -> bool:
        if self.peek() == ch:
            self.pos += 1
            return True
        return False

    def base62(self) -> int:
        if self.eat("_"):
            return 0
        value = 0
        while True:
            ch = self.next()
            if ch == "_":
                return value + 1
            if ch.isdigit():
                digit = ord(ch) - ord("0")
            elif "a" <= ch <= "z":
                digit = 10 + ord(ch) - ord("a")
            elif "A" <= ch <= "Z":
                digit = 36 + ord(ch) - ord("A")
            else:
                raise _Malformed("bad base-62 digit")
            value = value * 62 + digit

    def decimal(self) -> int:
        start = self.pos
        while self.peek().isdigit():
            self.pos += 1
        if start == self.pos:
            raise _Malformed("number expected")
        return int(self.s[start : self.pos])

    def disambiguator(self) -> None:
        if self.eat("s"):
            self.base62()

    def ident(self) -> str:
        self.disambiguator()
        punycode = self.eat("u")
        length = self.decimal()
        self.eat("_")
        name = self.s[self.pos : self.pos + length]
        if len(name) != length:
            raise _Malformed("identifier runs past the end")
        self.pos += length
        return f"{{punycode {name}}}" if punycode else name

    def backref(self, parse: str) -> str:
        target = self.base62() + 2  # relative to the text after "_R"
        if target >= self.pos:
            raise _Malformed("backref does not point backwards")
        saved = self.pos
        self.pos = target
        try:
            return self.path() if parse == "path" else self.type()
        finally:
            self.pos = saved

    def enter(self) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _Malformed("nested too deeply")

    def path(self) -> str:
        self.enter()
        try:
            tag = self.next()
            if tag == "C":
                return self.ident()
            if tag == "N":
                ns = self.next()
                parent = self.path()
                name = self.ident()
                if ns.isupper():
                    label = _NAMESPACES.get(ns, ns)
                    return f"{parent}::{{{label}{'#' if not name else ':' + name + '#'}}}"
                return f"{parent}::{name}"
            if tag == "M":
                self.disambiguator()
                self.path()  # the impl's own path is not part of the display
                return f"<{self.type()}>"
            if tag == "X":
                self.disambiguator()
                self.path()
                ty = self.type()
                trait = self.path()
                return f"<{ty} as {trait}>"
            if tag == "Y":
                ty = self.type()
                trait = self.path()
                return f"<{ty} as {trait}>"
            if tag == "I":
                base = self.path()
                while not self.eat("E"):
                    self.generic_arg()
                return base
            if tag == "B":
                return self.backref("path")
            raise _Malformed(f"unknown path tag {tag!r}")
        finally:
            self.depth -= 1

    def generic_arg(self) -> None:
        if self.eat("L"):
            self.base62()
        elif self.eat("K"):
            self.const()
        else:
            self.type()

    def const(self) -> None:
        if self.eat("B"):
            self.base62()
            return
        if self.eat("p"):
            return
        self.next()  # the const's type tag
        self.eat("n")
        while self.peek() and self.peek() != "_":
            self.pos += 1
        self.next()

    def type(self) -> str:
        self.enter()
        try:
            tag = self.peek()
            if tag in _BASIC:
                self.pos += 1
                return _BASIC[tag]
            self.pos += 1
            if tag in "CNMXYI":
                self.pos -= 1
                return self.path()
            if tag == "B":
                return self.backref("type")
            if tag in "RQ":
                if self.eat("L"):
                    self.base62()
                inner = self.type()
                return f"&{inner}" if tag == "R" else f"&mut {inner}"
            if tag in "PO":
                inner = self.type()
                return f"*const {inner}" if tag == "P" else f"*mut {inner}"
            if tag == "S":
                return f"[{self.type()}]"
            if tag == "A":
                inner = self.type()
                self.const()
                return f"[{inner}; _]"
            if tag == "T":
                items = []
                while not self.eat("E"):
                    items.append(self.type())
                return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
            raise _Malformed(f"unsupported type tag {tag!r}")
        finally:
            self.depth -= 1


def demangle_rust(symbol: str) -> str:
    """`symbol` demangled when it is a Rust v0 name (`_R...`), else `symbol` unchanged."""
    if not symbol.startswith("_R") or len(symbol) > _MAX_CHARS:
        return symbol
    reader = _Reader(symbol)
    reader.pos = 2
    if reader.peek().isdigit():
        reader.decimal()  # encoding version
    try:
        return reader.path()
    except (_Malformed, RecursionError, ValueError):
        return symbol
