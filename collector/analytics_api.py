"""AnalyticsService: fleet analytics over gRPC (rates, suspects with the regression window and
triage, triage changes, bad hosts), behind the query token like QueryService.

The servicer reads the store in worker threads and turns collector.analytics results into
crashfleet.v1 messages; bad input is INVALID_ARGUMENT naming the field, an unknown cluster
NOT_FOUND.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio

from collector.analytics.triage import Triage, TriageError
from collector.api import _Abort, _observe, _strict_handler, check_bearer
from collector.ingest import Ingestor
from collector.metrics import Metrics
from collector.store.analytics import AnalyticsStore, UnknownCluster, Window
from wire import convert
from wire.v1 import analytics_service_pb2 as pb
from wire.v1 import analytics_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:  # the statistics load at the first query (collector.store.analytics)
    from collector.analytics.badhosts import BadHost
    from collector.analytics.rates import RateRow
    from collector.analytics.regression import RegressionWindow
    from collector.analytics.suspects import Suspect, SuspectReport

__all__ = ["SERVICE_NAME", "AnalyticsServicer", "add_analytics_service"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AnalyticsService"].full_name
MAX_ID_CHARS = 128
MAX_SUSPECT_HOSTS = 1000

T = TypeVar("T")


def rate_to_proto(r: RateRow) -> pb.RateRow:
    return pb.RateRow(
        dim=r.dim, value=r.value, crashes=r.crashes, hosts=r.hosts, host_days=r.host_days,
        rate_per_1000_host_days=r.rate_per_1000_host_days, ci_low=r.ci_low, ci_high=r.ci_high,
    )  # fmt: skip


def _attrs(attrs: tuple[tuple[str, str], ...]) -> list[pb.Attribute]:
    return [pb.Attribute(dim=d, value=v) for d, v in attrs]


def suspect_to_proto(s: Suspect) -> pb.Suspect:
    return pb.Suspect(
        attributes=_attrs(s.attributes), cluster_hosts=s.cluster_hosts, cluster_hosts_with=s.cluster_hosts_with,
        fleet_hosts=s.fleet_hosts, fleet_hosts_with=s.fleet_hosts_with, host_days=s.host_days,
        host_days_with=s.host_days_with, rate_ratio=s.rate_ratio if not math.isnan(s.rate_ratio) else 0.0,
        ci_low=s.ci_low, ci_high=s.ci_high, p_value=s.p_value, q_value=s.q_value,
        explained_by=_attrs(s.explained_by), always_together=s.always_together, words=s.words,
    )  # fmt: skip


def triage_to_proto(t: Triage) -> pb.Triage:
    msg = pb.Triage(
        cluster_id=t.cluster_id, state=t.state, fixed_in=t.fixed_in, note=t.note, link=t.link,
        regressed_release=t.regressed_release,
    )  # fmt: skip
    if t.updated_at is not None:
        msg.updated_at.CopyFrom(convert.timestamp_from_datetime(t.updated_at))
    return msg


def suspects_to_proto(
    report: SuspectReport, window: RegressionWindow, triage: Triage
) -> pb.GetSuspectsResponse:
    return pb.GetSuspectsResponse(
        cluster_hosts=report.cluster_hosts, candidates=report.candidates,
        suspects=[suspect_to_proto(s) for s in report.suspects], summary=report.summary, hosts=list(report.hosts),
        releases=[
            pb.ReleaseRate(
                release=r.release, crashes=r.crashes, host_days=r.host_days,
                rate_per_1000_host_days=r.rate_per_1000_host_days, ci_low=r.ci_low, ci_high=r.ci_high,
                expected=r.expected, p_value=r.p_value,
            )
            for r in window.releases
        ],
        first_release=window.first_release, last_clean_release=window.last_clean_release,
        inconclusive=list(window.inconclusive), regression=window.words, triage=triage_to_proto(triage),
        regression_stratum=_attrs(window.stratum),
    )  # fmt: skip


def bad_host_to_proto(b: BadHost) -> pb.BadHost:
    msg = pb.BadHost(
        host=b.host, score=b.score, flagged=b.flagged, crashes=b.crashes, clusters=b.clusters,
        unshared_clusters=b.unshared_clusters, hardware_errors=b.hardware_errors, host_days=b.host_days,
        expected_crashes=b.expected_crashes, excess_p=b.excess_p, reason=b.reason, rules=list(b.rules),
    )  # fmt: skip
    if b.user_faults is not None:
        msg.user_faults = b.user_faults
    return msg


def _window(since: Timestamp, until: Timestamp, has_since: bool, has_until: bool) -> Window:
    try:
        return Window(
            convert.datetime_from_timestamp(since) if has_since else None,
            convert.datetime_from_timestamp(until) if has_until else None,
        )
    except (ValueError, OverflowError) as exc:
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"since/until: {exc}") from None


def _cluster_id(value: str) -> str:
    if not value or len(value) > MAX_ID_CHARS or not value.isprintable():
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "cluster_id: missing or not an id")
    return value


class AnalyticsServicer(pb_grpc.AnalyticsServiceServicer):
    def __init__(
        self,
        store: AnalyticsStore,
        metrics: Metrics,
        token: str | None = None,
        ingestor: Ingestor | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.token = token
        self.ingestor = ingestor  # told about triage changes, so regressions are seen at once

    async def _run(
        self, method: str, context: aio.ServicerContext[Any, Any], body: Callable[[], Awaitable[T]]
    ) -> T:
        async def guarded() -> T:
            if not check_bearer(context.invocation_metadata(), self.token):  # type: ignore[arg-type]
                raise _Abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
            try:
                return await body()
            except UnknownCluster as exc:
                raise _Abort(grpc.StatusCode.NOT_FOUND, f"no cluster {exc.args[0]!r}") from None
            except (TriageError, ValueError) as exc:
                raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None

        return await _observe(self.metrics, method, context, guarded)

    async def GetRates(
        self, request: pb.GetRatesRequest, context: aio.ServicerContext[Any, Any]
    ) -> pb.GetRatesResponse:
        async def body() -> pb.GetRatesResponse:
            window = _window(
                request.since, request.until, request.HasField("since"), request.HasField("until")
            )
            cluster = _cluster_id(request.cluster_id) if request.cluster_id else None
            rows = await asyncio.to_thread(self.store.rates, request.dim or None, window, cluster)
            return pb.GetRatesResponse(rows=[rate_to_proto(r) for r in rows])

        return await self._run("GetRates", context, body)

    async def GetSuspects(
        self, request: pb.GetSuspectsRequest, context: aio.ServicerContext[Any, Any]
    ) -> pb.GetSuspectsResponse:
        async def body() -> pb.GetSuspectsResponse:
            window = _window(
                request.since, request.until, request.HasField("since"), request.HasField("until")
            )
            cluster = _cluster_id(request.cluster_id)

            def read() -> pb.GetSuspectsResponse:
                from collector.analytics.suspects import regression_stratum

                report = self.store.suspects(cluster, window)
                # Within the top suspect's hosts: a confounded release is no regression.
                return suspects_to_proto(
                    report, self.store.regression(cluster, window, regression_stratum(report)),
                    self.store.get_triage(cluster),
                )  # fmt: skip

            return await asyncio.to_thread(read)

        return await self._run("GetSuspects", context, body)

    async def SetTriage(
        self, request: pb.SetTriageRequest, context: aio.ServicerContext[Any, Any]
    ) -> pb.SetTriageResponse:
        async def body() -> pb.SetTriageResponse:
            cluster = _cluster_id(request.cluster_id)
            triage = await asyncio.to_thread(
                self.store.set_triage, cluster, request.action, request.fixed_in,
                request.note if request.HasField("note") else None,
                request.link if request.HasField("link") else None,
            )  # fmt: skip
            if self.ingestor is not None:
                self.ingestor.triage_changed(cluster, triage.state, triage.fixed_in)
            return pb.SetTriageResponse(triage=triage_to_proto(triage))

        return await self._run("SetTriage", context, body)

    async def ListSuspectHosts(
        self, request: pb.ListSuspectHostsRequest, context: aio.ServicerContext[Any, Any]
    ) -> pb.ListSuspectHostsResponse:
        async def body() -> pb.ListSuspectHostsResponse:
            limit = request.limit if 0 < request.limit <= MAX_SUSPECT_HOSTS else 100
            rows = await asyncio.to_thread(self.store.bad_hosts, limit)
            return pb.ListSuspectHostsResponse(
                hosts=[bad_host_to_proto(b) for b in rows if request.all or b.flagged]
            )

        return await self._run("ListSuspectHosts", context, body)


def add_analytics_service(server: aio.Server, servicer: AnalyticsServicer) -> None:
    """Register AnalyticsService with strict request parsing (collector.api._strict_handler)."""
    server.add_generic_rpc_handlers(
        (_strict_handler(pb.DESCRIPTOR.services_by_name["AnalyticsService"], pb, servicer, servicer.metrics),)
    )
