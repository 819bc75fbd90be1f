"""Function-name normalization shared by titles, guilty frames and fingerprints."""

from __future__ import annotations

from analysis.linear import compile_text

__all__ = ["COMPILER_SUFFIX", "normalize_function"]

# GCC/Clang clone and split suffixes: the same source function under another build's optimizer
# decisions. `foo.isra.0`, `foo.constprop.3`, `foo.part.1`, `foo.cold`, `foo.llvm.123456`,
# `foo.lto_priv.0`, and chains of them (`foo.constprop.0.isra.0`). RE2: a name made of nothing but
# suffixes would make `re` retry the chain from every dot (quadratic).
COMPILER_SUFFIX = compile_text(r"(?:\.(?:isra|constprop|part|cold|llvm|lto_priv|localalias|specialized)(?:\.\d+)?)+$")


def normalize_function(name: str) -> str:
    """Strip compiler clone suffixes so that one source function has one name across builds."""
    return COMPILER_SUFFIX.sub("", name.strip())
