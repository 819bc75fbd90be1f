"""What `clusters`, `cluster`, `crashes` and `hosts` share: client flags, filters, paging, output.

`--json` prints JSON Lines with the same objects the HTTP API returns (collector.api_json), so a
script can move between the two without reshaping anything.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from wire.model import ClusterSummary, CrashSummary, HostSummary

T = TypeVar("T")

DEFAULT_LIMIT = 100
PAGE = 1000  # rows per request when following pages (the server's maximum)
# The filter flags as a user typed them, for "no crashes match filter kernel-release=6.1".
FILTER_FLAGS = ("cluster", "host", "kernel_release", "kind", "module", "hardware", "since", "until")


@dataclass(frozen=True)
class Listing(Generic[T]):
    """One paged list command: which QueryService RPC it calls and how it prints a row.

    `rpc` names both the stub method and its request message (`<rpc>Request`), a naming the
    proto keeps for every List call; `reply_field` is the repeated field of the reply.
    """

    rpc: str
    reply_field: str
    from_proto: Callable[[Any], T]
    to_json: Callable[[T], dict[str, Any]]
    headers: list[str]
    row: Callable[[T], list[str]]


def _cluster_row(c: ClusterSummary) -> list[str]:
    return [c.id, str(c.count), str(c.hosts), seen(c.last_seen, c.last_received), c.kind, c.title]


def _crash_row(c: CrashSummary) -> list[str]:
    return [c.id, when(c.received_at), c.host, c.cluster_id, c.title]


def _host_row(h: HostSummary) -> list[str]:
    return [h.hostname, h.kernel_release, str(h.crashes), when(h.last_heartbeat), h.agent_version]


def _listings() -> dict[str, Listing[Any]]:
    """The list commands by name; built on use so that importing this module stays cheap."""
    from collector.api_json import cluster_json, crash_json, host_json
    from wire import convert

    return {
        "clusters": Listing(
            "ListClusters", "clusters", convert.cluster_from_proto, cluster_json,
            ["ID", "COUNT", "HOSTS", "LAST SEEN", "KIND", "TITLE"], _cluster_row,
        ),
        "crashes": Listing(
            "ListCrashes", "crashes", convert.crash_from_proto, crash_json,
            ["ID", "RECEIVED", "HOST", "CLUSTER", "TITLE"], _crash_row,
        ),
        "hosts": Listing(
            "ListHosts", "hosts", convert.host_from_proto, host_json,
            ["HOST", "KERNEL", "CRASHES", "LAST HEARTBEAT", "AGENT"], _host_row,
        ),
    }  # fmt: skip


def add_common(parser: argparse.ArgumentParser, filters: bool = True) -> None:
    from wire.channel import add_client_arguments

    add_client_arguments(parser)
    parser.add_argument("--json", action="store_true", help="JSON Lines, one object per row")
    if filters:
        parser.add_argument("--since", type=_time, metavar="TIME", help="ISO time or date (UTC if no zone)")
        parser.add_argument("--until", type=_time, metavar="TIME")
        parser.add_argument("--kernel-release", metavar="RELEASE")
        parser.add_argument("--host", metavar="HOSTNAME")
        parser.add_argument("--module", metavar="NAME", help="loaded module")
        parser.add_argument("--kind", metavar="KIND", help="crash kind, e.g. null-deref, warning")
        parser.add_argument("--hardware", metavar="TEXT")
        parser.add_argument(
            "--limit", type=_count, default=DEFAULT_LIMIT, metavar="N",
            help=f"show N rows ({DEFAULT_LIMIT}); says how many more there are",
        )  # fmt: skip
        parser.add_argument("--all", action="store_true", help="every matching row, page after page")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return value


def _time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time: {text!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def filter_message(args: argparse.Namespace, cluster_id: str | None = None) -> Any:
    from wire import convert
    from wire.model import QueryFilter

    return convert.filter_to_proto(
        QueryFilter(
            since=args.since,
            until=args.until,
            kernel_release=args.kernel_release,
            host=args.host,
            module=args.module,
            kind=args.kind,
            hardware=args.hardware,
            cluster_id=cluster_id,
        )
    )


@dataclass
class Pages(Generic[T]):
    """The rows of a listing, page after page, and the store's total from its first page."""

    fetch: Callable[[str, int], tuple[list[T], str, int]]
    limit: int  # rows to show; 0: all
    total: int = 0
    shown: int = 0

    def __iter__(self) -> Iterator[T]:
        token = ""
        first = True
        while True:
            want = PAGE if self.limit <= 0 else min(PAGE, self.limit - self.shown)
            rows, token, total = self.fetch(token, want)
            if first:
                self.total, first = total, False
            for row in rows:
                yield row
                self.shown += 1
                if 0 < self.limit <= self.shown:
                    return
            if not token:
                return


def paginate(fetch: Callable[[str, int], tuple[list[T], str, int]], limit: int) -> Pages[T]:
    """Walk pages until `limit` rows (0: all) or the last page; `.total` after the first page."""
    return Pages(fetch, limit)


def describe_filter(args: argparse.Namespace) -> str:
    """The filters a user set, as they typed them: "kernel-release=6.1, host=web-1"."""
    parts = []
    for name in FILTER_FLAGS:
        value = getattr(args, name, None)
        if value:
            shown = value.isoformat() if isinstance(value, datetime) else str(value)
            parts.append(f"{name.replace('_', '-')}={shown}")
    return ", ".join(parts)


def closing_note(command: str, args: argparse.Namespace, pages: Pages[Any]) -> str | None:
    """What stderr says after a listing: nothing matched, or how many rows were left out."""
    if pages.shown == 0:
        wanted = describe_filter(args)
        return f"no {command} match filter {wanted}" if wanted else f"no {command} stored yet"
    if pages.total > pages.shown:
        return f"{pages.shown} of {pages.total} shown; --all for more"
    return None


def emit_json(rows: Iterable[dict[str, Any]]) -> None:
    for row in rows:
        sys.stdout.write(json.dumps(row, sort_keys=False) + "\n")


def emit_table(headers: list[str], rows: Iterable[list[str]]) -> None:
    """Aligned columns, streamed: widths come from the header and the first PAGE rows, so that
    `--all` over a million rows never holds more than a page (a longer cell later just sticks out)."""
    it = iter(rows)
    head = [headers, *itertools.islice(it, PAGE)]
    widths = [max(len(r[i]) for r in head) for i in range(len(headers))]
    for row in itertools.chain(head, it):
        line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        sys.stdout.write(line.rstrip() + "\n")


def when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value is not None else "-"


def seen(happened: datetime, received: datetime | None) -> str:
    """When a crash happened, with when it arrived beside it where the two differ (a backfill)."""
    shown = when(happened)
    if received is None or when(received) == shown:
        return shown
    return f"{shown} (received {when(received)})"


def run_listing(args: argparse.Namespace, command: str, cluster_id: str | None = None) -> int:
    """`crashfleet <command>`: page through its RPC and print the rows as a table or JSON Lines."""
    import grpc

    from wire.channel import client_config_from_args, open_channel
    from wire.v1 import query_service_pb2, query_service_pb2_grpc

    listing = _listings()[command]
    request_type = getattr(query_service_pb2, f"{listing.rpc}Request")
    try:
        with open_channel(client_config_from_args(args)) as channel:
            call = getattr(query_service_pb2_grpc.QueryServiceStub(channel), listing.rpc)
            flt = filter_message(args, cluster_id=cluster_id)

            def fetch(token: str, size: int) -> tuple[list[Any], str, int]:
                reply = call(request_type(filter=flt, page_size=size, page_token=token), timeout=args.timeout)
                items = getattr(reply, listing.reply_field)
                return [listing.from_proto(item) for item in items], str(reply.next_page_token), int(reply.total_count)

            pages = paginate(fetch, 0 if args.all else args.limit)
            if args.json:
                emit_json(listing.to_json(r) for r in pages)
            else:
                emit_table(listing.headers, (listing.row(r) for r in pages))
            note = closing_note(command, args, pages)
            if note is not None:
                sys.stdout.flush()
                print(f"crashfleet {command}: {note}", file=sys.stderr)
    except (grpc.RpcError, OSError, ValueError) as exc:
        return rpc_error(command, exc)
    return 0


def rpc_error(command: str, exc: Exception) -> int:
    """Print a gRPC failure the way a user can act on it; exit status 1 (2 for not found)."""
    import grpc

    if isinstance(exc, grpc.RpcError):
        code = exc.code()
        print(f"crashfleet {command}: {code.name}: {exc.details()}", file=sys.stderr)
        return 2 if code == grpc.StatusCode.NOT_FOUND else 1
    print(f"crashfleet {command}: {exc}", file=sys.stderr)
    return 1
