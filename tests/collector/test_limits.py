"""The ingest limits on a real server: when to come back, duplicates for free, a bucket per peer,
and old crashes counted apart from the panic rate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from grpc import aio

from collector.limits import ReportLimiter, TokenBuckets, peer_key
from tests.collector.test_api import counter, report, run, serving
from wire.retry import RETRY_AFTER_KEY, retry_after_seconds
from wire.v1 import ingest_service_pb2_grpc


def test_a_throttled_answer_says_when_to_come_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path, reports_per_second=0.5, report_burst=2) as c, \
                aio.insecure_channel(c.grpc_target) as ch:  # fmt: skip
            ingest = ingest_service_pb2_grpc.IngestServiceStub(ch)
            for i in range(2):
                await ingest.ReportCrash(report(f"burst-{i:04d}"))
            with pytest.raises(aio.AioRpcError) as err:
                await ingest.ReportCrash(report("burst-0002"))
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            trailing = err.value.trailing_metadata()
            hint = retry_after_seconds(trailing)
            # An empty bucket refilling at 0.5/s holds a token again within 2 s.
            assert hint is not None and 1.5 <= hint <= 2.0, trailing
            assert "web-1 exceeds its report rate" in (err.value.details() or "")

    run(scenario)


def test_duplicates_cost_no_token_and_are_answered_while_throttled(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path, reports_per_second=0.001, report_burst=3) as c, \
                aio.insecure_channel(c.grpc_target) as ch:  # fmt: skip
            ingest = ingest_service_pb2_grpc.IngestServiceStub(ch)
            first = [await ingest.ReportCrash(report(f"once-{i:04d}")) for i in range(2)]
            # A rerun of the whole backfill, three times over: all duplicates, none throttled.
            for _ in range(3):
                for i, original in enumerate(first):
                    again = await ingest.ReportCrash(report(f"once-{i:04d}"))
                    assert again.duplicate and again.crash_id == original.crash_id
            third = await ingest.ReportCrash(report("once-0002"))  # the bucket still held its third token
            assert not third.duplicate
            with pytest.raises(aio.AioRpcError) as err:
                await ingest.ReportCrash(report("once-0003"))
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # Throttled now, yet a resend of a stored report is still answered as a duplicate.
            again = await ingest.ReportCrash(report("once-0000"))
            assert again.duplicate and again.crash_id == first[0].crash_id
            assert (counter(c, "new"), counter(c, "duplicate")) == (3.0, 7.0)

    run(scenario)


def test_rotating_host_names_meet_the_per_peer_limit(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path, reports_per_second=100.0, report_burst=100,
                           peer_reports_per_second=0.001, peer_report_burst=4) as c, \
                aio.insecure_channel(c.grpc_target) as ch:  # fmt: skip
            ingest = ingest_service_pb2_grpc.IngestServiceStub(ch)
            for i in range(4):
                await ingest.ReportCrash(report(f"rotate-{i:04d}", name=f"fake-{i}"))
            with pytest.raises(aio.AioRpcError) as err:
                await ingest.ReportCrash(report("rotate-0099", name="fake-99"))
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "ipv4:127.0.0.1 exceeds its report rate" in (err.value.details() or "")
            assert any(k == RETRY_AFTER_KEY for k, _ in err.value.trailing_metadata() or ())

    run(scenario)


def test_old_crashes_count_as_backfill_not_as_panic_rate(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path) as c, aio.insecure_channel(c.grpc_target) as ch:
            ingest = ingest_service_pb2_grpc.IngestServiceStub(ch)
            now = datetime.now(UTC)
            for key, when in (("old-00000001", now - timedelta(days=30)), ("old-00000002", now - timedelta(hours=2)),
                              ("new-00000001", now - timedelta(minutes=5))):  # fmt: skip
                request = report(key)
                request.crash_time.FromDatetime(when)
                await ingest.ReportCrash(request)
            await ingest.ReportCrash(report("new-00000002"))  # no crash time: counted when received
            registry = c.metrics.registry
            release = {"kernel_release": "6.1.0-26-amd64"}
            assert registry.get_sample_value("crashfleet_crashes_backfill_total", release) == 2.0
            assert registry.get_sample_value("crashfleet_crashes_total", release) == 2.0

    run(scenario)


def test_limiter_checks_both_buckets_and_charges_both() -> None:
    now = [0.0]
    limiter = ReportLimiter(
        TokenBuckets(rate=1.0, burst=2, clock=lambda: now[0]), TokenBuckets(rate=0.5, burst=3, clock=lambda: now[0])
    )
    assert limiter.check("a", "p") is None
    limiter.charge("a", "p")
    limiter.charge("a", "p")
    refused = limiter.check("a", "p")
    assert refused is not None and (refused.scope, refused.retry_after) == ("host", 1.0)
    limiter.charge("b", "p")  # the peer's third token, through another host name
    refused = limiter.check("c", "p")
    assert refused is not None and (refused.scope, refused.retry_after) == ("peer", 2.0)
    now[0] = 2.0
    assert limiter.check("c", "p") is None
    # Debt: two in-flight requests both saw the last token; the next wait is longer.
    limiter.charge("c", "p")
    limiter.charge("c", "p")
    refused = limiter.check("c", "p")
    assert refused is not None and refused.retry_after == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("peer", "key"),
    [
        ("ipv4:10.0.0.7:51234", "ipv4:10.0.0.7"),
        ("ipv6:[::1]:51234", "ipv6:[::1]"),
        ("ipv6:[2001:db8::5]:443", "ipv6:[2001:db8::5]"),
        ("unix:/run/crashfleet.sock", "unix:/run/crashfleet.sock"),
    ],
)
def test_peer_key_drops_the_port(peer: str, key: str) -> None:
    assert peer_key(peer) == key
