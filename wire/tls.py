"""TLS and mutual TLS for the collector's gRPC port, and who a caller really is.

With a client CA configured the server requires a client certificate signed by it, and the host
a crash or heartbeat is recorded for is the certificate's identity (`reporting_host`): a field in
the request is only a claim, and one compromised agent must not be able to file crashes as any
other host. The identity is the certificate's subject CN, else its first DNS subjectAltName —
what a fleet CA puts the hostname in.

Files are checked with the stdlib `ssl` module before gRPC sees them, so a wrong path, a key that
does not belong to the certificate or a non-PEM file fails at startup with `TlsConfigError`
(naming the file and the reason) instead of every handshake failing later with a vague error.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final, Protocol

import grpc

from analysis.errors import CrashfleetInputError

__all__ = [
    "PeerIdentityError",
    "TlsConfigError",
    "channel_credentials",
    "peer_identity",
    "reporting_host",
    "server_credentials",
]

log = logging.getLogger(__name__)

MAX_PEM_BYTES: Final = 1 << 20  # a certificate bundle is kilobytes; anything huge is a wrong file
MAX_IDENTITY_LENGTH: Final = 253  # a DNS name's maximum length

# grpc auth_context property names (grpc/grpc_security_constants.h).
CN_PROPERTY: Final = "x509_common_name"
SAN_PROPERTY: Final = "x509_subject_alternative_name"
DNS_PROPERTY: Final = "peer_dns"
TRANSPORT_PROPERTY: Final = "transport_security_type"

PathLike = str | os.PathLike[str]


class TlsConfigError(CrashfleetInputError):
    """A certificate, key or CA file that cannot be used; `path` and `reason` say which and why."""


class PeerIdentityError(Exception):
    """mTLS identity was required but the peer presented no usable certificate identity.
    The servicer maps it to grpc.StatusCode.UNAUTHENTICATED."""


class _HasAuthContext(Protocol):
    """grpc.ServicerContext and grpc.aio.ServicerContext alike (their stubs disagree on the value type)."""

    def auth_context(self) -> Mapping[str, object]: ...


def _read_pem(path: PathLike, what: str, marker: bytes) -> bytes:
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_PEM_BYTES:
            raise TlsConfigError(str(p), f"{what} file is {size} bytes, more than {MAX_PEM_BYTES}")
        data = p.read_bytes()
    except TlsConfigError:
        raise
    except OSError as exc:
        raise TlsConfigError(str(p), f"cannot read {what}: {exc.strerror or exc}") from None
    if marker not in data:
        raise TlsConfigError(str(p), f"not a PEM {what} (no '{marker.decode()}' block)")
    return data


def _check_pair(cert: PathLike, key: PathLike) -> None:
    """The stdlib loads the pair the way OpenSSL will and says when the key is not the cert's."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_cert_chain(os.fspath(cert), os.fspath(key))
    except ssl.SSLError as exc:
        reason = (
            "private key does not match the certificate" if "KEY_VALUES_MISMATCH" in str(exc) else str(exc)
        )
        raise TlsConfigError(os.fspath(key), reason) from None
    except OSError as exc:
        raise TlsConfigError(os.fspath(cert), f"cannot load certificate/key pair: {exc}") from None


def _check_ca(ca: PathLike) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_verify_locations(cafile=os.fspath(ca))
    except (ssl.SSLError, OSError) as exc:
        raise TlsConfigError(os.fspath(ca), f"unusable CA bundle: {exc}") from None


def server_credentials(
    cert: PathLike, key: PathLike, client_ca: PathLike | None = None
) -> grpc.ServerCredentials:
    """TLS credentials for the gRPC server; with `client_ca`, clients must present a certificate
    signed by that CA (mutual TLS) or the handshake fails."""
    cert_pem = _read_pem(cert, "certificate", b"-----BEGIN CERTIFICATE-----")
    key_pem = _read_pem(key, "private key", b"PRIVATE KEY-----")
    _check_pair(cert, key)
    ca_pem: bytes | None = None
    if client_ca is not None:
        ca_pem = _read_pem(client_ca, "CA certificate", b"-----BEGIN CERTIFICATE-----")
        _check_ca(client_ca)
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)],
        root_certificates=ca_pem,
        require_client_auth=ca_pem is not None,
    )


def channel_credentials(
    ca: PathLike | None = None, cert: PathLike | None = None, key: PathLike | None = None
) -> grpc.ChannelCredentials:
    """Client side: trust `ca` (None: the system roots) and, for mTLS, present `cert`/`key`."""
    if (cert is None) != (key is None):
        missing, given = ("key", cert) if key is None else ("certificate", key)
        raise TlsConfigError(
            os.fspath(given or ""), f"a client {missing} is needed too (give both or neither)"
        )
    ca_pem = _read_pem(ca, "CA certificate", b"-----BEGIN CERTIFICATE-----") if ca is not None else None
    if ca is not None:
        _check_ca(ca)
    cert_pem = key_pem = None
    if cert is not None and key is not None:
        cert_pem = _read_pem(cert, "certificate", b"-----BEGIN CERTIFICATE-----")
        key_pem = _read_pem(key, "private key", b"PRIVATE KEY-----")
        _check_pair(cert, key)
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )


def _clean(raw: bytes) -> str | None:
    """A certificate name usable as a host identity: printable, no spaces, bounded."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text or len(text) > MAX_IDENTITY_LENGTH:
        return None
    if any(not ch.isprintable() or ch.isspace() for ch in text):
        return None
    return text


def _values(auth: Mapping[str, object], key: str) -> list[bytes]:
    raw = auth.get(key)
    if isinstance(raw, bytes):
        return [raw]
    if isinstance(raw, Iterable) and not isinstance(raw, str):
        return [v for v in raw if isinstance(v, bytes)]
    return []


def _first(values: list[bytes], dns_only: bool = False) -> str | None:
    for raw in values:
        name = _clean(raw)
        if name is None:
            continue
        # The SAN property mixes DNS names with URIs, e-mails and IPs; a host identity is a DNS name.
        if dns_only and (":" in name or "@" in name or "/" in name):
            continue
        return name
    return None


def peer_identity(context: _HasAuthContext) -> str | None:
    """The verified client certificate's CN, else its first DNS subjectAltName; None without a
    client certificate (plaintext, or TLS without client auth) or with no usable name."""
    auth = context.auth_context()
    if not auth:
        return None
    return (
        _first(_values(auth, CN_PROPERTY))
        or _first(_values(auth, DNS_PROPERTY))
        or _first(_values(auth, SAN_PROPERTY), dns_only=True)
    )


def reporting_host(context: _HasAuthContext, claimed: str, *, require_identity: bool = False) -> str:
    """The host to record a report under: the certificate identity when the caller has one, the
    request's claimed hostname otherwise. With `require_identity` (the collector runs mTLS), a
    caller without one raises PeerIdentityError instead of falling back to the claim."""
    identity = peer_identity(context)
    if identity is None:
        if require_identity:
            raise PeerIdentityError("client certificate has no usable CN or DNS subjectAltName")
        return claimed
    if claimed and claimed != identity:
        log.info("claimed hostname ignored identity=%s claimed=%r", identity, claimed[:MAX_IDENTITY_LENGTH])
    return identity
