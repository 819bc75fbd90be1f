"""mTLS on a real grpc.aio server: certificates made at test time with the openssl CLI, a trivial
servicer that answers with the caller's identity, and the handshakes that must fail."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest

from tests.conftest import IN_CI
from wire import tls

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(
    OPENSSL is None and not IN_CI, reason="openssl CLI not installed (Debian package openssl)"
)

METHOD = "/crashfleet.test.Whoami/Who"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path  # CN=web-1.example
    client_key: Path
    san_only_cert: Path  # no CN, SAN DNS:db-7.example
    san_only_key: Path
    rogue_cert: Path  # CN=web-1.example, signed by another CA
    rogue_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _ca(d: Path, name: str) -> tuple[Path, Path]:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={name}", "-days", "2",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
        cwd=d,
    )  # fmt: skip
    return d / f"{name}.pem", d / f"{name}.key"


def _leaf(d: Path, name: str, subject: str, ext: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    (d / f"{name}.ext").write_text(ext + "\nbasicConstraints=CA:FALSE\n")
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject,
        cwd=d,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
        "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
        cwd=d,
    )  # fmt: skip
    return d / f"{name}.pem", d / f"{name}.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = _ca(d, "fleet-ca")
    rogue_ca = _ca(d, "rogue-ca")
    server = _leaf(
        d,
        "server",
        "/CN=collector",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth",
        ca,
    )
    client = _leaf(d, "client", "/O=crashfleet/CN=web-1.example", "subjectAltName=DNS:web-1.example\nextendedKeyUsage=clientAuth", ca)  # fmt: skip
    san_only = _leaf(d, "sanonly", "/O=crashfleet", "subjectAltName=URI:spiffe://fleet/db,DNS:db-7.example\nextendedKeyUsage=clientAuth", ca)  # fmt: skip
    rogue = _leaf(d, "rogue", "/CN=web-1.example", "extendedKeyUsage=clientAuth", rogue_ca)
    return Pki(ca[0], *server, *client, *san_only, *rogue)


def _whoami_handler() -> grpc.GenericRpcHandler[bytes, bytes]:
    """Echoes what the collector would record: the identity, and the host a claim resolves to."""

    async def who(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        identity = tls.peer_identity(context)
        host = tls.reporting_host(context, request.decode())
        return f"{identity}|{host}".encode()

    return grpc.method_handlers_generic_handler(
        "crashfleet.test.Whoami", {"Who": grpc.unary_unary_rpc_method_handler(who)}
    )


def _call(
    server_creds: grpc.ServerCredentials | None,
    channel_creds: grpc.ChannelCredentials | None,
    claimed: str = "claimed-host",
) -> str:
    """Start a server on 127.0.0.1:0, make one call, return 'identity|host' or raise RpcError."""

    async def run() -> str:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((_whoami_handler(),))
        if server_creds is None:
            port = server.add_insecure_port("127.0.0.1:0")
        else:
            port = server.add_secure_port("127.0.0.1:0", server_creds)
        await server.start()
        try:
            target = f"localhost:{port}"
            channel = (
                grpc.aio.insecure_channel(target)
                if channel_creds is None
                else grpc.aio.secure_channel(target, channel_creds)
            )
            async with channel:
                call = channel.unary_unary(METHOD, None, None)
                reply: bytes = await call(claimed.encode(), timeout=10)
                return reply.decode()
        finally:
            await server.stop(None)

    return asyncio.run(run())


def test_client_cert_identity_is_the_reporting_host(pki: Pki) -> None:
    server = tls.server_credentials(pki.server_cert, pki.server_key, pki.ca)
    client = tls.channel_credentials(pki.ca, pki.client_cert, pki.client_key)
    assert _call(server, client, claimed="some-other-host") == "web-1.example|web-1.example"


def test_san_is_the_identity_when_there_is_no_cn(pki: Pki) -> None:
    server = tls.server_credentials(pki.server_cert, pki.server_key, pki.ca)
    client = tls.channel_credentials(pki.ca, pki.san_only_cert, pki.san_only_key)
    assert _call(server, client) == "db-7.example|db-7.example"  # the URI SAN is not a host name


def test_no_client_cert_fails_the_handshake(pki: Pki) -> None:
    server = tls.server_credentials(pki.server_cert, pki.server_key, pki.ca)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        _call(server, tls.channel_credentials(pki.ca))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_cert_from_another_ca_fails_the_handshake(pki: Pki) -> None:
    server = tls.server_credentials(pki.server_cert, pki.server_key, pki.ca)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        _call(server, tls.channel_credentials(pki.ca, pki.rogue_cert, pki.rogue_key))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_server_only_tls_keeps_the_claimed_host(pki: Pki) -> None:
    server = tls.server_credentials(pki.server_cert, pki.server_key)
    assert _call(server, tls.channel_credentials(pki.ca), claimed="web-9") == "None|web-9"


def test_plaintext_keeps_the_claimed_host() -> None:
    assert _call(None, None, claimed="web-9") == "None|web-9"


# Configuration errors name the file and the reason --------------------------------------------


def test_missing_file(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(tls.TlsConfigError) as err:
        tls.server_credentials(missing, pki.server_key)
    assert err.value.path == str(missing)
    assert "cannot read certificate" in err.value.reason


def test_key_of_another_certificate(pki: Pki) -> None:
    with pytest.raises(tls.TlsConfigError) as err:
        tls.server_credentials(pki.server_cert, pki.client_key)
    assert err.value.path == str(pki.client_key)
    assert err.value.reason == "private key does not match the certificate"


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "not a PEM certificate"), (b"\x00\xff" * 64, "not a PEM certificate")],
)
def test_not_pem(pki: Pki, tmp_path: Path, content: bytes, reason: str) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_bytes(content)
    with pytest.raises(tls.TlsConfigError, match=reason):
        tls.server_credentials(bad, pki.server_key)


def test_truncated_certificate(pki: Pki, tmp_path: Path) -> None:
    cut = tmp_path / "cut.pem"
    cut.write_bytes(pki.server_cert.read_bytes()[:200])
    with pytest.raises(tls.TlsConfigError) as err:
        tls.server_credentials(cut, pki.server_key)
    assert err.value.path in (str(cut), str(pki.server_key))


def test_corrupt_client_ca(pki: Pki, tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n")
    with pytest.raises(tls.TlsConfigError) as err:
        tls.server_credentials(pki.server_cert, pki.server_key, bad)
    assert err.value.path == str(bad)
    assert "unusable CA bundle" in err.value.reason


def test_oversized_file(pki: Pki, tmp_path: Path) -> None:
    huge = tmp_path / "huge.pem"
    huge.write_bytes(b"-----BEGIN CERTIFICATE-----\n" + b"A" * (tls.MAX_PEM_BYTES + 1))
    with pytest.raises(tls.TlsConfigError, match="more than"):
        tls.server_credentials(huge, pki.server_key)


def test_client_cert_without_key(pki: Pki) -> None:
    with pytest.raises(tls.TlsConfigError, match="give both or neither"):
        tls.channel_credentials(pki.ca, cert=pki.client_cert)


# peer_identity / reporting_host on hand-made auth contexts -------------------------------------


class FakeContext:
    def __init__(self, auth: Mapping[str, object]) -> None:
        self._auth = auth

    def auth_context(self) -> Mapping[str, object]:
        return self._auth


@pytest.mark.parametrize(
    ("auth", "identity"),
    [
        ({}, None),
        ({"transport_security_type": [b"ssl"]}, None),
        ({"x509_common_name": [b"web-1"], "x509_subject_alternative_name": [b"other"]}, "web-1"),
        ({"x509_common_name": b"web-1"}, "web-1"),  # the sync stubs' shape: one bytes value
        ({"x509_subject_alternative_name": [b"spiffe://x/y", b"a@b.c", b"web-2"]}, "web-2"),
        ({"peer_dns": [b"web-3"], "x509_subject_alternative_name": [b"web-4"]}, "web-3"),
        ({"x509_common_name": [b"evil\nhost"], "x509_subject_alternative_name": [b"web-5"]}, "web-5"),
        ({"x509_common_name": [b"with space"]}, None),
        ({"x509_common_name": [b"\xff\xfe"]}, None),
        ({"x509_common_name": [b"a" * 254]}, None),
    ],
)
def test_peer_identity(auth: Mapping[str, object], identity: str | None) -> None:
    assert tls.peer_identity(FakeContext(auth)) == identity


def test_reporting_host_requires_identity_when_asked() -> None:
    ctx = FakeContext({})
    assert tls.reporting_host(ctx, "claimed") == "claimed"
    with pytest.raises(tls.PeerIdentityError):
        tls.reporting_host(ctx, "claimed", require_identity=True)
    with_cert = FakeContext({"x509_common_name": [b"web-1"]})
    assert tls.reporting_host(with_cert, "claimed", require_identity=True) == "web-1"
