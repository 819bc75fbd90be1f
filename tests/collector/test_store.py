"""The store contract, run against SQLite and PostgreSQL alike (the `store` fixture)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from collector.clustering import cluster_id_for
from collector.store import (
    HostRecord,
    InvalidPageToken,
    Resign,
    Store,
    StoredSignature,
    StoreError,
    open_store,
)
from collector.store.sql import DEFAULT_PAGE_SIZE, load_migrations
from collector.store.sqlite import SqliteStore
from tests.collector.conftest import NOW, at, make_crash
from wire.model import Page, QueryFilter

ANY = QueryFilter()


def test_new_crash_creates_cluster_and_is_readable(store: Store) -> None:
    result = store.ingest(make_crash("k-0001"))
    assert not result.duplicate and result.cluster_created and result.cluster_new_host
    clusters, token = store.list_clusters(ANY, Page())
    assert token == ""
    [cluster] = clusters
    assert cluster.id == result.cluster_id
    assert (cluster.count, cluster.hosts, cluster.kind) == (1, 1, "null-deref")
    assert cluster.representative_crash_id == result.crash_id
    assert cluster.kernel_releases == ("6.1.0-26-amd64",)
    assert cluster.common_modules == ("crashme", "e1000e")
    assert cluster.first_seen == cluster.last_seen == NOW
    detail = store.get_crash(result.crash_id)
    assert detail is not None
    assert detail.summary.source == "/var/crash/k-0001/dmesg.txt"
    assert detail.summary.cluster_id == result.cluster_id
    assert detail.modules == ("crashme", "e1000e")
    assert detail.host_facts["machine"] == "x86_64"


def test_same_key_is_a_duplicate_counted_once(store: Store) -> None:
    first = store.ingest(make_crash("k-dup"))
    again = store.ingest(make_crash("k-dup", received_at=at(5)))
    assert again.duplicate
    assert (again.crash_id, again.cluster_id) == (first.crash_id, first.cluster_id)
    [cluster] = store.list_clusters(ANY, Page())[0]
    assert cluster.count == 1
    assert len(store.list_crashes(ANY, Page())[0]) == 1


def test_genuine_occurrences_each_count(store: Store) -> None:
    for i, host in enumerate(["a", "b", "a"]):
        result = store.ingest(make_crash(f"k-{i}", host=host, received_at=at(i)))
        assert result.cluster_new_host == (i < 2)
    [cluster] = store.list_clusters(ANY, Page())[0]
    assert (cluster.count, cluster.hosts) == (3, 2)
    assert cluster.last_seen == at(2)
    detail = store.get_cluster(cluster.id)
    assert detail is not None
    assert [(b.value, b.count) for b in detail.by_host] == [("a", 2), ("b", 1)]


def test_common_modules_are_those_in_every_crash(store: Store) -> None:
    store.ingest(make_crash("k-1", modules=("crashme", "e1000e", "nvme")))
    store.ingest(make_crash("k-2", modules=("crashme", "nvme"), received_at=at(1)))
    [cluster] = store.list_clusters(ANY, Page())[0]
    assert cluster.common_modules == ("crashme", "nvme")
    detail = store.get_cluster(cluster.id)
    assert detail is not None
    assert {(b.value, b.count) for b in detail.by_module} == {("crashme", 2), ("nvme", 2), ("e1000e", 1)}


def test_similar_signature_joins_existing_cluster(store: Store) -> None:
    base = ("crashme_napi_pending", "net_rx_action", "__do_softirq", "irq_exit_rcu", "common_interrupt")
    inlined = ("crashme_napi_pending", "net_rx_action", "__do_softirq", "common_interrupt")
    first = store.ingest(make_crash("k-1", frames=base))
    second = store.ingest(make_crash("k-2", frames=inlined, received_at=at(1)))
    assert not second.cluster_created
    assert second.cluster_id == first.cluster_id
    assert second.similarity == pytest.approx(0.8)
    detail = store.get_cluster(first.cluster_id)
    assert detail is not None
    assert len(detail.fingerprints) == 2
    # The second fingerprint is now an exact key of the cluster.
    third = store.ingest(make_crash("k-3", frames=inlined, received_at=at(2)))
    assert (third.cluster_id, third.similarity) == (first.cluster_id, 1.0)


def test_other_class_or_guilty_frame_make_new_clusters(store: Store) -> None:
    frames = ("a_fn", "b_fn", "c_fn", "d_fn", "e_fn")
    first = store.ingest(make_crash("k-1", frames=frames, kind="warning", reason="WARNING: at a.c"))
    other_reason = store.ingest(make_crash("k-2", frames=frames, kind="warning", reason="WARNING: at b.c"))
    other_guilty = store.ingest(make_crash("k-3", frames=("x_fn", *frames[1:]), kind="warning", reason="WARNING: at a.c"))
    assert len({first.cluster_id, other_reason.cluster_id, other_guilty.cluster_id}) == 3
    assert other_reason.cluster_created and other_guilty.cluster_created


def test_one_bug_class_in_one_function_is_one_cluster(store: Store) -> None:
    """cl-2: a KASAN report and a general protection fault in the same function, reached through
    other callers, join the cluster the first one made."""
    first = store.ingest(make_crash("k-1", frames=("a_fn", "b_fn", "c_fn"), kind="kasan",
                                    reason="BUG: KASAN: use-after-free"))  # fmt: skip
    gpf = store.ingest(make_crash("k-2", frames=("a_fn", "x_fn", "y_fn", "z_fn"), kind="general-protection-fault",
                                  reason="general protection fault"))  # fmt: skip
    assert (gpf.cluster_id, gpf.cluster_created) == (first.cluster_id, False)
    assert 0.0 < gpf.similarity < 0.5


def test_cluster_id_derives_from_creating_fingerprint(store: Store) -> None:
    result = store.ingest(make_crash("k-1", fingerprint="abc123"))
    assert result.cluster_id == cluster_id_for("abc123")


def test_future_crash_time_is_clamped_to_received_at(store: Store) -> None:
    store.ingest(make_crash("k-1", crash_time=NOW + timedelta(days=30)))
    store.ingest(make_crash("k-2", crash_time=NOW - timedelta(days=3), received_at=at(1)))
    [cluster] = store.list_clusters(ANY, Page())[0]
    assert cluster.last_seen == NOW
    assert cluster.first_seen == NOW - timedelta(days=3)


def test_pagination_walks_every_row_once(store: Store) -> None:
    for i in range(7):
        store.ingest(make_crash(f"k-{i}", frames=(f"fn_{i}",), received_at=at(i)))
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        rows, token = store.list_crashes(ANY, Page(size=3, token=token))
        seen += [r.id for r in rows]
        pages += 1
        if not token:
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 7
    clusters: list[str] = []
    token = ""
    while True:
        crows, token = store.list_clusters(ANY, Page(size=2, token=token))
        clusters += [c.id for c in crows]
        if not token:
            break
    assert len(clusters) == len(set(clusters)) == 7
    # Most recent activity first.
    first_page = store.list_clusters(ANY, Page(size=2))[0]
    assert first_page[0].last_seen == at(6)


@pytest.mark.parametrize("token", ["garbage!", "eyJ4IjoxfQ", "WyJob3N0cyIsImEiXQ"])
def test_foreign_page_tokens_are_refused(store: Store, token: str) -> None:
    with pytest.raises(InvalidPageToken):
        store.list_crashes(ANY, Page(token=token))


def test_page_size_defaults_and_caps(store: Store) -> None:
    store.ingest(make_crash("k-1"))
    rows, token = store.list_crashes(ANY, Page(size=0))
    assert len(rows) == 1 and token == ""
    assert DEFAULT_PAGE_SIZE == 100


def test_filters(store: Store) -> None:
    store.ingest(make_crash("k-1", host="a", release="6.1.0-26-amd64", modules=("nvme",)))
    store.ingest(make_crash("k-2", host="b", release="6.1.0-27-amd64", modules=("e1000e",),
                            frames=("other_fn",), kind="warning", reason="WARNING: at x", received_at=at(1)))
    assert [c.host for c in store.list_crashes(QueryFilter(host="b"), Page())[0]] == ["b"]
    assert [c.host for c in store.list_crashes(QueryFilter(module="nvme"), Page())[0]] == ["a"]
    assert [c.host for c in store.list_crashes(QueryFilter(kind="warning"), Page())[0]] == ["b"]
    assert [c.host for c in store.list_crashes(QueryFilter(since=at(1)), Page())[0]] == ["b"]
    assert [c.host for c in store.list_crashes(QueryFilter(until=at(1)), Page())[0]] == ["a"]
    clusters = store.list_clusters(QueryFilter(kernel_release="6.1.0-27-amd64"), Page())[0]
    assert [c.kind for c in clusters] == ["warning"]
    assert [c.kind for c in store.list_clusters(QueryFilter(module="nvme"), Page())[0]] == ["null-deref"]
    assert store.list_clusters(QueryFilter(host="nobody"), Page())[0] == []
    cluster_id = clusters[0].id
    assert [c.host for c in store.list_crashes(QueryFilter(cluster_id=cluster_id), Page())[0]] == ["b"]


def test_heartbeats_and_hosts(store: Store) -> None:
    store.heartbeat(HostRecord("web-2", "6.1.0-26-amd64", "x86_64", "QEMU", "0.1.0", 2, 2 << 30, ("e1000e", "nvme")), NOW)
    store.heartbeat(HostRecord("web-1", "6.1.0-27-amd64", "x86_64", "QEMU", "0.1.0", 4, 4 << 30, ("nvme",)), NOW)
    store.ingest(make_crash("k-1", host="web-1"))
    # An older heartbeat arriving late does not roll the inventory back.
    store.heartbeat(HostRecord("web-1", "6.1.0-20-amd64", "x86_64", "QEMU", "0.0.9", 4, 4 << 30, ()), at(-5))
    hosts, token = store.list_hosts(ANY, Page())
    assert token == ""
    assert [(h.hostname, h.kernel_release, h.crashes) for h in hosts] == [
        ("web-1", "6.1.0-27-amd64", 1), ("web-2", "6.1.0-26-amd64", 0),
    ]
    assert hosts[1].modules == ("e1000e", "nvme")
    assert [h.hostname for h in store.list_hosts(QueryFilter(module="e1000e"), Page())[0]] == ["web-2"]
    assert store.hosts_by_release() == {"6.1.0-26-amd64": 1, "6.1.0-27-amd64": 1}
    page1, token = store.list_hosts(ANY, Page(size=1))
    page2, last = store.list_hosts(ANY, Page(size=1, token=token))
    assert [h.hostname for h in page1 + page2] == ["web-1", "web-2"] and last == ""


def test_heartbeat_user_faults_replace_the_previous_counts(store: Store) -> None:
    base = HostRecord("web-1", "6.1.0-27-amd64", "x86_64", "QEMU", "0.1.0", 4, 4 << 30, ())
    assert store.user_faults("web-1") == {}
    store.heartbeat(replace(base, user_faults=(("java", 3), ("node", 1))), at(-10))
    store.heartbeat(replace(base, hostname="web-2", user_faults=(("sshd", 1),)), at(-10))
    assert store.user_faults("web-1") == {"java": 3, "node": 1}
    # The next heartbeat carries this boot's counts again: a snapshot, not a delta.
    store.heartbeat(replace(base, user_faults=(("java", 4), ("python3", 2))), at(-5))
    assert store.user_faults("web-1") == {"java": 4, "python3": 2}
    store.heartbeat(base, NOW)  # a new boot without faults
    assert store.user_faults("web-1") == {}
    assert store.user_faults("web-2") == {"sshd": 1}


def test_unknown_ids_read_as_none(store: Store) -> None:
    assert store.get_cluster("nope") is None
    assert store.get_crash("nope") is None


def test_daily_counts_cover_last_14_days(store: Store) -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    store.ingest(make_crash("k-1", received_at=now))
    store.ingest(make_crash("k-2", received_at=now, crash_time=now - timedelta(days=2)))
    store.ingest(make_crash("k-3", received_at=now, crash_time=now - timedelta(days=40)))
    [cluster] = store.list_clusters(ANY, Page())[0]
    assert len(cluster.daily_counts) == 14
    assert cluster.daily_counts[-1] == 1 and cluster.daily_counts[-3] == 1 and sum(cluster.daily_counts) == 2


def test_recluster_regroups_and_reports_moves(store: Store) -> None:
    a = store.ingest(make_crash("k-1", frames=("f_one",), fingerprint="one"))
    b = store.ingest(make_crash("k-2", frames=("f_two",), fingerprint="two", received_at=at(1)))
    assert a.cluster_id != b.cluster_id

    def merge_all(stored: StoredSignature) -> Resign:
        return Resign("merged", "fp-2", "null-deref", "BUG: kernel NULL pointer dereference", ("f_one",), "merged", "f_one")

    report = store.recluster(merge_all)
    assert (report.crashes, report.clusters_before, report.clusters_after, report.refingerprinted) == (2, 2, 1, 2)
    new_id = cluster_id_for("merged")
    assert {(m.old_cluster_id, m.new_cluster_id, m.crashes) for m in report.moves} == {
        (a.cluster_id, new_id, 1), (b.cluster_id, new_id, 1),
    }
    [cluster] = store.list_clusters(ANY, Page())[0]
    assert (cluster.id, cluster.count, cluster.title) == (new_id, 2, "merged")
    # Unchanged rules: nothing moves, ids stay.
    again = store.recluster(merge_all)
    assert again.moves == () and again.refingerprinted == 0


def test_recluster_reads_in_batches_and_sees_every_crash(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import collector.store.sql as sql

    monkeypatch.setattr(sql, "RECLUSTER_BATCH", 2)
    for i in range(5):  # two share a receive time: the keyset must not skip or repeat either
        store.ingest(make_crash(f"k-{i}", frames=(f"f_{i}",), received_at=at(min(i, 3))))
    seen: list[str] = []

    def keep(stored: StoredSignature) -> Resign:
        seen.append(stored.crash_id)
        frames = (stored.fingerprint,)  # a guilty frame of its own: nothing may merge
        return Resign(stored.fingerprint, "fp-test", "null-deref", "BUG: kernel NULL pointer dereference", frames, "t", "f")

    report = store.recluster(keep)
    assert report.crashes == 5 and len(set(seen)) == 5 and report.moves == ()


def test_recluster_keeps_crashes_the_signer_refuses(store: Store) -> None:
    a = store.ingest(make_crash("k-1"))

    def broken(stored: StoredSignature) -> Resign:
        raise ValueError("unreadable signature")

    report = store.recluster(broken)
    assert report.failed == ((a.crash_id, "ValueError: unreadable signature"),)
    assert report.moves == ()
    assert store.list_clusters(ANY, Page())[0][0].count == 1


def test_reopening_keeps_data_and_schema_version(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    s = SqliteStore(path)
    s.ingest(make_crash("k-1"))
    s.close()
    s = SqliteStore(path)
    assert s.schema_version() == load_migrations()[-1].version
    assert len(s.list_crashes(ANY, Page())[0]) == 1
    s.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    SqliteStore(path).close()
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (999, 'future', 0)")
    with pytest.raises(StoreError, match="newer"):
        SqliteStore(path)


@pytest.mark.parametrize(
    "url", ["mysql://x/y", "sqlite://host/path", "sqlite:///", "nonsense"],
)
def test_open_store_refuses_bad_urls(url: str) -> None:
    with pytest.raises(StoreError):
        open_store(url)


def test_open_store_sqlite_url(tmp_path: Path) -> None:
    s = open_store(f"sqlite:///{tmp_path}/x.db")
    assert isinstance(s, SqliteStore) and s.path == f"{tmp_path}/x.db"
    s.close()


def test_sqlite_urls_follow_sqlalchemy_slashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three slashes then a path: relative to the working directory; a fourth slash: absolute."""
    work, elsewhere = tmp_path / "work", tmp_path / "abs"
    (work / "var" / "lib").mkdir(parents=True)
    elsewhere.mkdir()
    monkeypatch.chdir(work)
    relative = open_store("sqlite:///var/lib/c.db")
    absolute = open_store(f"sqlite:////{str(elsewhere).lstrip('/')}/c.db")
    try:
        assert isinstance(relative, SqliteStore) and relative.path == "var/lib/c.db"
        assert isinstance(absolute, SqliteStore) and absolute.path == f"{elsewhere}/c.db"
        assert (work / "var" / "lib" / "c.db").is_file() and (elsewhere / "c.db").is_file()
    finally:
        relative.close()
        absolute.close()


def test_relative_sqlite_path_into_a_missing_directory_names_the_four_slash_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError) as caught:
        open_store("sqlite:///var/lib/crashfleet-collector/collector.db")
    message = str(caught.value)
    assert "relative" in message and "sqlite:////var/lib/crashfleet-collector/collector.db" in message
    assert not (tmp_path / "var").exists()  # nothing created on the way to the refusal


def test_unwritable_sqlite_path_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        SqliteStore(str(tmp_path / "missing-dir" / "c.db"))
