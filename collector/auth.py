"""The query token: one parser of `Authorization` credentials for the HTTP port and gRPC.

RFC 7235 §2.1 makes the auth-scheme case-insensitive (`Bearer`, `bearer`, `BEARER` are one
scheme) and separates it from the credentials by one or more spaces; RFC 6750 names the scheme
`Bearer`. Both ports call `bearer_credentials` on the header (HTTP) or the `authorization`
metadata (gRPC) and `token_matches` on the result, so the two cannot drift apart again.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Final

__all__ = ["SCHEME", "bearer_credentials", "metadata_credentials", "token_matches"]

SCHEME: Final = "bearer"


def bearer_credentials(authorization: str) -> str | None:
    """The credentials of an `Authorization` value whose scheme is Bearer (any case), stripped;
    None when it names another scheme (Basic, Token ...) or no scheme at all."""
    scheme, _, rest = authorization.strip().partition(" ")
    if scheme.lower() != SCHEME:
        return None
    return rest.strip(" \t")


def metadata_credentials(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The bearer credentials of gRPC call metadata (keys arrive lowercased; compared anyway),
    None without an `authorization` entry of the Bearer scheme."""
    for key, value in metadata or ():
        if key.lower() == "authorization" and isinstance(value, str):
            found = bearer_credentials(value)
            if found is not None:
                return found
    return None


def token_matches(presented: str, token: str) -> bool:
    """Constant-time comparison (`hmac.compare_digest` takes as long wherever the first differing
    byte is); surrogateescape so any presented text compares instead of raising."""
    return hmac.compare_digest(
        presented.encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape")
    )
