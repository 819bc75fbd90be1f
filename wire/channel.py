"""Client plumbing shared by the CLI and the agent: one way to reach a collector.

`open_channel(ClientConfig)` gives a grpc channel with crashfleet's options, TLS (server CA,
optional client certificate for mTLS) and the bearer token as `authorization` metadata on every
call. The token travels as call metadata through an interceptor rather than call credentials
because gRPC refuses call credentials on plaintext channels, and a token on a loopback or
already-tunnelled collector is still wanted.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from wire.grpc_options import client_options

__all__ = [
    "TOKEN_ENV",
    "ClientConfig",
    "add_client_arguments",
    "client_config_from_args",
    "open_channel",
]

TOKEN_ENV = "CRASHFLEET_TOKEN"
DEFAULT_COLLECTOR = "127.0.0.1:50051"


@dataclass(frozen=True, slots=True)
class ClientConfig:
    target: str = DEFAULT_COLLECTOR
    ca_file: str | None = None  # trust this CA for the collector's certificate (enables TLS)
    cert_file: str | None = None  # client certificate for mTLS
    key_file: str | None = None
    token: str | None = None
    server_name: str | None = None  # TLS name override (collector reached by IP)

    @property
    def tls(self) -> bool:
        return self.ca_file is not None or self.cert_file is not None


class _ClientCallDetails(grpc.ClientCallDetails):
    def __init__(self, details: grpc.ClientCallDetails, metadata: tuple[tuple[str, str | bytes], ...]) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


if TYPE_CHECKING:  # generic in grpc-stubs only; the runtime class is not subscriptable
    _UnaryInterceptor = grpc.UnaryUnaryClientInterceptor[Any, Any]
else:
    _UnaryInterceptor = grpc.UnaryUnaryClientInterceptor


class _TokenInterceptor(_UnaryInterceptor):
    """Adds `authorization: Bearer <token>` to every unary call."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        metadata = list(client_call_details.metadata or [])
        metadata.append(self._header)
        return continuation(_ClientCallDetails(client_call_details, tuple(metadata)), request)


def open_channel(config: ClientConfig) -> grpc.Channel:
    """A synchronous channel to the collector (close it, or use it as a context manager)."""
    options = client_options(config.server_name)
    if config.tls:
        from wire.tls import channel_credentials

        credentials = channel_credentials(config.ca_file, config.cert_file, config.key_file)
        channel = grpc.secure_channel(config.target, credentials, options=options)
    else:
        channel = grpc.insecure_channel(config.target, options=options)
    if config.token:
        channel = grpc.intercept_channel(channel, _TokenInterceptor(config.token))
    return channel


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--collector", metavar="HOST:PORT", default=DEFAULT_COLLECTOR, help=f"collector gRPC address ({DEFAULT_COLLECTOR})"
    )
    parser.add_argument("--ca", metavar="PEM", help="CA certificate of the collector (enables TLS)")
    parser.add_argument("--cert", metavar="PEM", help="client certificate (mTLS)")
    parser.add_argument("--key", metavar="PEM", help="client private key (mTLS)")
    parser.add_argument("--server-name", metavar="NAME", help="expected name in the collector's certificate")
    parser.add_argument("--token-file", metavar="FILE", help=f"bearer token for queries (or ${TOKEN_ENV})")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS", help="per-call deadline (30)")


def client_config_from_args(args: argparse.Namespace) -> ClientConfig:
    token = os.environ.get(TOKEN_ENV) or None
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as f:
            token = f.read().strip() or None
    return ClientConfig(
        target=args.collector,
        ca_file=args.ca,
        cert_file=args.cert,
        key_file=args.key,
        token=token,
        server_name=args.server_name,
    )
