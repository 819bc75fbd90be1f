"""Kernel releases in the order their distribution sorts them.

Debian and Ubuntu releases (`6.1.0-56-amd64`, `5.15.0-91-generic`) compare by dpkg's rules
(python-debian's `debian_support.Version`: digit runs numerically, `~` before anything), so
`6.1.0-9` < `6.1.0-56`, which a string sort gets wrong. RHEL-family releases
(`5.14.0-362.8.1.el9_3.x86_64`, `6.5.6-300.fc39.x86_64`) compare by rpm's `rpmvercmp`,
implemented below (python-debian rejects their `_`): alternating digit and letter segments, digits
numerically and newer than letters, separators ignored, `~` before anything, the longer
otherwise-equal string newer. A release's scheme is decided by its own text (`.elN`/`.fcN`
marks rpm), so one fleet may mix both; across schemes, dpkg releases sort first.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from debian.debian_support import Version

__all__ = ["ReleaseError", "compare_releases", "rpmvercmp", "scheme_of", "sort_releases"]

_RPM_MARK = re.compile(r"\.(el|fc|amzn|an|ol)\d")
_RPM_SEGMENT = re.compile(r"~|\d+|[A-Za-z]+")
_RPM_VALID = re.compile(r"[0-9A-Za-z._+~^-]+")


class ReleaseError(ValueError):
    """A kernel release that no distribution's ordering accepts."""


def scheme_of(release: str) -> str:
    """'rpm' for RHEL/Fedora-family releases, else 'dpkg'."""
    return "rpm" if _RPM_MARK.search(release) else "dpkg"


def rpmvercmp(a: str, b: str) -> int:
    """rpm's version comparison: -1, 0 or 1."""
    if a == b:
        return 0
    sa, sb = _RPM_SEGMENT.findall(a), _RPM_SEGMENT.findall(b)
    for x, y in zip(sa, sb, strict=False):
        if x == y:
            continue
        if x == "~" or y == "~":
            return -1 if x == "~" else 1
        if x.isdigit() != y.isdigit():
            return 1 if x.isdigit() else -1
        if x.isdigit():
            nx, ny = int(x), int(y)
            if nx != ny:
                return 1 if nx > ny else -1
        elif x != y:
            return 1 if x > y else -1
    if len(sa) == len(sb):
        return 0
    longer, sign = (sa, 1) if len(sa) > len(sb) else (sb, -1)
    return -sign if longer[min(len(sa), len(sb))] == "~" else sign


def _check(release: str) -> str:
    if not release or len(release) > 256:
        raise ReleaseError(f"kernel release {release!r}: empty or longer than 256 characters")
    if scheme_of(release) == "rpm":
        if not _RPM_VALID.fullmatch(release):
            raise ReleaseError(f"kernel release {release!r}: characters rpm versions cannot hold")
        return "rpm"
    try:
        Version(release)
    except ValueError:
        raise ReleaseError(
            f"kernel release {release!r}: not a dpkg version (letters, digits and . + ~ - only, starting with a digit)"
        ) from None
    if not release[0].isdigit():
        raise ReleaseError(f"kernel release {release!r}: does not start with a digit")
    return "dpkg"


def compare_releases(a: str, b: str) -> int:
    """-1, 0 or 1 as a sorts before, with or after b; ReleaseError for a malformed release."""
    sa, sb = _check(a), _check(b)
    if sa != sb:
        return -1 if sa == "dpkg" else 1
    if sa == "rpm":
        return rpmvercmp(a, b)
    va, vb = Version(a), Version(b)
    return -1 if va < vb else (1 if va > vb else 0)


def sort_releases(releases: Iterable[str]) -> list[str]:
    """Oldest first, as the distribution orders them."""
    return sorted(releases, key=functools.cmp_to_key(compare_releases))
