"""Symbolization with debuginfo: addresses and `function+offset` to source lines and inline chains.

`elfinfo` is the only module that imports pyelftools; `index` keeps a per-build-id on-disk index;
`lookup.Symbolizer` answers like `addr2line -f -i`; `debuginfo` finds the right files by build-id;
`enrich` adds the answers to crash records; `disasm` renders crash's `dis -rl` view; `tasks`
lists a dump's tasks like crash's `ps` from DWARF struct offsets.
"""

from __future__ import annotations

from analysis.model import SourceLocation
from analysis.symbolize.lookup import Symbolizer

__all__ = ["SourceLocation", "Symbolizer"]
