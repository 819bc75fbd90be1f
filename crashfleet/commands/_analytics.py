"""What `rates`, `suspects`, `triage` and `hosts --suspect` share: one AnalyticsService call and
its reply as JSON (the proto's field names; an unbounded interval end is null) or as text."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import Any

from crashfleet.commands._query import rpc_error


def message_json(msg: Any) -> dict[str, Any]:
    """A reply message as a JSON object: every field by its proto name, timestamps as ISO text,
    infinities as null, unset optional fields as null."""
    from google.protobuf.timestamp_pb2 import Timestamp

    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        value = getattr(msg, field.name)
        if field.has_presence and field.message_type is None and not msg.HasField(field.name):
            out[field.name] = None
        elif (
            field.message_type is not None and field.message_type.full_name == Timestamp.DESCRIPTOR.full_name
        ):
            out[field.name] = value.ToDatetime().isoformat() + "Z" if msg.HasField(field.name) else None
        elif field.message_type is not None and not _repeated(field):
            out[field.name] = message_json(value) if msg.HasField(field.name) else None
        elif _repeated(field):
            out[field.name] = [
                message_json(v) if field.message_type is not None else _plain(v) for v in value
            ]
        else:
            out[field.name] = _plain(value)
    return out


def _repeated(field: Any) -> bool:
    return bool(field.is_repeated) if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED


def _plain(value: Any) -> Any:
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return None
    return value


def set_window(request: Any, args: argparse.Namespace) -> None:
    """Copy `--since` / `--until` into a request's window fields (unset: the collector's default)."""
    from wire import convert

    if args.since is not None:
        request.since.CopyFrom(convert.timestamp_from_datetime(args.since))
    if args.until is not None:
        request.until.CopyFrom(convert.timestamp_from_datetime(args.until))


def ratio(x: float) -> str:
    if math.isinf(x):
        return "∞"
    return f"{x:.0f}×" if x >= 10 else f"{x:.1f}×"


def number(x: float) -> str:
    return "∞" if math.isinf(x) else f"{x:,.2f}"


def call(
    args: argparse.Namespace, command: str, rpc: Callable[[Any], Any], render: Callable[[Any], None]
) -> int:
    """Open the channel, call `rpc(stub)` and `render` the reply; errors as `rpc_error` says."""
    import grpc

    from wire.channel import client_config_from_args, open_channel
    from wire.v1 import analytics_service_pb2_grpc

    try:
        with open_channel(client_config_from_args(args)) as channel:
            reply = rpc(analytics_service_pb2_grpc.AnalyticsServiceStub(channel))
    except (grpc.RpcError, OSError, ValueError) as exc:
        return rpc_error(command, exc)
    render(reply)
    sys.stdout.flush()
    return 0
