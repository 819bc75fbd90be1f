"""Drain on recovery: an outage never ages a report, the spool drains oldest first the moment the
collector answers, at the pace its limiter asks for; a restarted agent ships at once; a half-open
connection costs one deadline, not the kernel's TCP timeout."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.ship import GrpcShipper, Outcome, ShipResult
from agent.spool import COLLECTOR_UP, PAUSED_UNTIL, NewReport, Spool
from agent.worker import Worker, open_spool
from analysis.signature import analyze
from tests.agent.builders import STAMP
from tests.agent.test_service import FakeCollector, Running, make_config, service_for, wait_for
from tests.agent.test_worker import WARNING_LOG, config_for
from wire import convert
from wire.v1 import crash_pb2

OUTAGE_SECONDS = 1800.0
HEARTBEAT_SECONDS = 60.0


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


RECORD = analyze(WARNING_LOG)[0]


def payload(key: str) -> bytes:
    """A real ReportCrashRequest under `key`, as the worker spools it."""
    host = crash_pb2.HostFacts(hostname="w-1")
    return convert.report_request(RECORD, key=key, host=host, source_path="/var/crash/x/dmesg").SerializeToString()


def spooled(spool: Spool, clock: Clock, count: int) -> list[str]:
    """`count` reports enqueued one second apart, as an outage collects them; their keys, oldest first."""
    keys = []
    for i in range(count):
        key = f"report-{i:04d}-{STAMP}"
        spool.enqueue([NewReport(key, "crash", payload(key))])
        keys.append(key)
        clock.now += 1.0
    return keys


def worker(config: AgentConfig, spool: Spool, collector: object, clock: Clock) -> Worker:
    return Worker(config, spool, collector, analyze, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]


def next_run(spool: Spool, clock: Clock, last_heartbeat: float) -> float:
    """When the daemon starts the next worker: the pause's end or the next heartbeat, if sooner."""
    paused = float(spool.get_meta(PAUSED_UNTIL) or 0.0)
    return min(max(paused, clock.now), last_heartbeat + HEARTBEAT_SECONDS)


def test_a_spool_after_an_outage_is_all_due_when_the_collector_answers_oldest_first(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    clock = Clock()
    spool = open_spool(config, clock=clock)
    collector = FakeCollector()
    collector.down = True
    keys = spooled(spool, clock, 100)
    # Half an hour down: the daemon keeps starting workers (pause ends, heartbeats); each fails.
    outage_ends = clock.now + OUTAGE_SECONDS
    last_heartbeat = clock.now
    runs = 0
    while clock.now < outage_ends:
        heartbeat = clock.now >= last_heartbeat + HEARTBEAT_SECONDS
        last_heartbeat = clock.now if heartbeat else last_heartbeat
        worker(config, spool, collector, clock).run(heartbeat=heartbeat)
        runs += 1
        clock.now = max(clock.now + 0.001, next_run(spool, clock, last_heartbeat))
    assert runs > 10 and collector.calls > 10
    assert spool.get_meta(COLLECTOR_UP) == "0"
    # No report was aged by the outage: every one is due now, oldest first.
    clock.now = outage_ends
    due = spool.due(1000)
    assert [item.key for item in due] == keys
    assert all(item.attempts == 0 for item in due)
    # The collector answers; the agent's next run is within the maximum retry interval.
    collector.down = False
    detected = next_run(spool, clock, last_heartbeat)
    assert detected - outage_ends <= min(HEARTBEAT_SECONDS, config.backoff_max_seconds)
    clock.now = detected
    worker(config, spool, collector, clock).run(heartbeat=detected >= last_heartbeat + HEARTBEAT_SECONDS)
    assert list(collector.received) == keys
    assert spool.stats().depth == 0 and spool.get_meta(COLLECTOR_UP) == "1"


class Throttling(FakeCollector):
    """Takes `burst` reports, then throttles with a hint until `per_second` allows the next."""

    def __init__(self, clock: Clock, burst: int, per_second: float) -> None:
        super().__init__()
        self.clock = clock
        self.tokens = float(burst)
        self.stamp = clock.now
        self.burst = burst
        self.rate = per_second
        self.throttled = 0

    def report(self, payload: bytes) -> ShipResult:
        self.tokens = min(self.burst, self.tokens + (self.clock.now - self.stamp) * self.rate)
        self.stamp = self.clock.now
        if self.tokens < 1.0:
            self.throttled += 1
            self.calls += 1
            hint = (1.0 - self.tokens) / self.rate
            return ShipResult(Outcome.THROTTLED, "RESOURCE_EXHAUSTED", "slow down", retry_after=hint)
        self.tokens -= 1.0
        return super().report(payload)


def test_a_throttled_drain_follows_the_limiters_hint_and_ages_nothing(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    clock = Clock()
    spool = open_spool(config, clock=clock)
    keys = spooled(spool, clock, 40)
    collector = Throttling(clock, burst=10, per_second=2.0)
    start = clock.now
    worker(config, spool, collector, clock).run(heartbeat=False)
    # One worker drained it all, waiting out each hint in-process: 10 at once, then 2 a second.
    assert list(collector.received) == keys
    assert spool.stats().depth == 0
    elapsed = clock.now - start
    assert 15.0 <= elapsed <= 15.0 * 1.25 + 1.0, elapsed
    assert collector.throttled >= 1 and spool.get_meta(COLLECTOR_UP) == "1"


def test_an_agent_restarted_with_a_spool_ships_at_once(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    spool = open_spool(config)
    keys = [f"restart-{i:04d}-{STAMP}" for i in range(5)]
    for key in keys:
        spool.enqueue([NewReport(key, "crash", payload(key))])
    # What a long outage left behind in an older agent: a pause far away, reports pushed back.
    spool.set_meta(PAUSED_UNTIL, repr(time.time() + 3600))
    spool.set_meta(COLLECTOR_UP, "0")
    for key in keys[1:]:
        spool.retry_later(key, "UNAVAILABLE", delay=3600)
    spool.close()
    collector = FakeCollector()
    started = time.monotonic()
    with Running(service_for(config, collector)):
        wait_for(lambda: len(collector.received) == 5, "the spool to ship", timeout=5)
    assert time.monotonic() - started < 5
    assert list(collector.received) == keys


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP port that accepts connections and never says a word (a collector host that vanished
    behind a stateful firewall looks like this)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


def test_a_half_open_connection_costs_one_deadline_and_ages_nothing(tmp_path: Path, silent_server: str) -> None:
    config = dataclasses.replace(config_for(tmp_path, collector=silent_server), deadline_seconds=1.0)
    clock = Clock(time.time() - 100.0)
    spool = open_spool(config, clock=clock)
    keys = spooled(spool, clock, 3)
    clock.now = time.time()
    shipper = GrpcShipper(config)
    try:
        started = time.monotonic()
        worker(config, spool, shipper, clock).run(heartbeat=False)
        elapsed = time.monotonic() - started
    finally:
        shipper.close()
    # One call hit its deadline; the worker stopped there instead of trying the next report.
    assert elapsed < config.deadline_seconds + 2.0, f"a silent collector held the worker {elapsed:.1f}s"
    assert spool.get_meta(COLLECTOR_UP) == "0"
    assert spool.take_counters() == {"ship_failures:DEADLINE_EXCEEDED": 1}
    clock.now = float(spool.get_meta(PAUSED_UNTIL) or 0)
    assert {item.key: item.attempts for item in spool.due(10)} == dict.fromkeys(keys, 0)


def test_the_collectors_hint_reaches_the_agent(tmp_path: Path) -> None:
    """Against a real collector: its limiter's refusal arrives as THROTTLED with the hint, and a
    duplicate still goes through while throttled."""
    import asyncio

    from tests.collector.test_api import serving

    results: list[ShipResult] = []

    async def scenario() -> None:
        async with serving(tmp_path, reports_per_second=0.5, report_burst=1) as c:
            config = config_for(tmp_path, collector=c.grpc_target)
            shipper = GrpcShipper(config)
            try:
                for key in ("hint-00000001", "hint-00000002", "hint-00000001"):
                    results.append(await asyncio.to_thread(shipper.report, payload(key)))
            finally:
                shipper.close()

    asyncio.run(scenario())
    first, throttled, duplicate = results
    assert first.outcome == Outcome.ACKED and not first.duplicate
    assert throttled.outcome == Outcome.THROTTLED and throttled.code == "RESOURCE_EXHAUSTED"
    assert throttled.retry_after is not None and 1.5 <= throttled.retry_after <= 2.0
    assert duplicate.outcome == Outcome.ACKED and duplicate.duplicate
