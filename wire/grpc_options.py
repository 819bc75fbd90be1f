"""Every gRPC channel and server option crashfleet sets, in one place so both ends agree.

The message cap is what turns an oversized report into RESOURCE_EXHAUSTED before a byte of it
is parsed; keepalive settings keep idle agent connections through NAT and load balancers
without the server's GOAWAY("too_many_pings") that mismatched keepalive settings cause.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CLIENT_OPTIONS",
    "MAX_MESSAGE_BYTES",
    "SERVER_OPTIONS",
    "client_options",
    "server_options",
]

MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024
KEEPALIVE_TIME_MS: Final = 60_000
KEEPALIVE_TIMEOUT_MS: Final = 20_000
MIN_PING_INTERVAL_MS: Final = 30_000  # server side: accept client pings this often (< KEEPALIVE_TIME_MS)

SERVER_OPTIONS: Final[tuple[tuple[str, int], ...]] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.http2.min_ping_interval_without_data_ms", MIN_PING_INTERVAL_MS),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.so_reuseport", 0),  # a second collector on the same port must fail, not share it
)

CLIENT_OPTIONS: Final[tuple[tuple[str, int], ...]] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.enable_retries", 1),
)


def server_options() -> list[tuple[str, int]]:
    return list(SERVER_OPTIONS)


def client_options(server_name: str | None = None) -> list[tuple[str, int | str]]:
    """`server_name` overrides the TLS name checked against the server certificate (a collector
    reached by IP address or through a tunnel)."""
    options: list[tuple[str, int | str]] = list(CLIENT_OPTIONS)
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return options
