"""Store invariants under random report streams (hypothesis): counting, dedupe and pagination agree
with a plain-Python model of what was sent, whatever the order, duplicates and page size."""

from __future__ import annotations

import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.store import IngestResult
from collector.store.sqlite import SqliteStore
from tests.collector.conftest import at, make_crash
from wire.model import Page, QueryFilter

SIGNATURES = [
    ("f_a", "g_1", "h_1", "i_1"),
    ("f_a", "g_2", "h_1", "i_1"),  # similar to the first (same guilty frame, one frame off)
    ("f_b", "g_1", "h_1", "i_1"),  # another guilty frame: never joins f_a
    ("f_c",),
]
REPORT = st.tuples(st.integers(0, 11), st.sampled_from(["h1", "h2", "h3"]), st.integers(0, len(SIGNATURES) - 1))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reports=st.lists(REPORT, min_size=1, max_size=30), page_size=st.integers(1, 7))
def test_counts_dedupe_and_pages_match_a_model(reports: list[tuple[int, str, int]], page_size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(f"{tmp}/c.db")
        try:
            first_by_key: dict[int, tuple[str, int]] = {}
            results: dict[int, IngestResult] = {}
            for minute, (key, host, sig) in enumerate(reports):
                result = store.ingest(make_crash(f"key-{key:04d}", host=host, frames=SIGNATURES[sig], received_at=at(minute)))
                if key in first_by_key:
                    assert result.duplicate and result.crash_id == results[key].crash_id
                else:
                    assert not result.duplicate
                    first_by_key[key] = (host, sig)
                    results[key] = result

            crashes: list[str] = []
            token = ""
            while True:
                rows, token = store.list_crashes(QueryFilter(), Page(size=page_size, token=token))
                crashes += [r.id for r in rows]
                if not token:
                    break
            assert sorted(crashes) == sorted(r.crash_id for r in results.values())

            clusters, _ = store.list_clusters(QueryFilter(), Page(size=1000))
            assert sum(c.count for c in clusters) == len(first_by_key)
            for cluster in clusters:
                members = [k for k, r in results.items() if r.cluster_id == cluster.id]
                assert cluster.count == len(members)
                assert cluster.hosts == len({first_by_key[k][0] for k in members})
                guilty = {SIGNATURES[first_by_key[k][1]][0] for k in members}
                assert len(guilty) == 1, "a similarity join crossed guilty frames"
            # Signatures 0 and 1 differ by one frame of four: one cluster when both occurred.
            sigs = {sig: results[k].cluster_id for k, (_, sig) in first_by_key.items()}
            if 0 in sigs and 1 in sigs:
                assert sigs[0] == sigs[1]
        finally:
            store.close()
