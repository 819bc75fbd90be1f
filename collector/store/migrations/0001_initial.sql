-- The crashfleet collector schema, version 1. One text for SQLite and PostgreSQL: only types
-- both understand (TEXT, BIGINT, DOUBLE PRECISION), times as BIGINT microseconds since the Unix
-- epoch (UTC), lists and maps as JSON text. Statements are separated by a line holding only ";".

-- One row per cluster. `fingerprint` is the fingerprint that created it; its UNIQUE constraint
-- plus INSERT ... ON CONFLICT DO NOTHING is what makes cluster creation race-free across
-- replicas. Aggregates are maintained in the ingest transaction so listing stays an index scan.
CREATE TABLE clusters (
    id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    rules_version TEXT NOT NULL,
    title TEXT NOT NULL,
    kind TEXT NOT NULL,
    normalized_reason TEXT NOT NULL,
    guilty_frame TEXT NOT NULL,
    frames TEXT NOT NULL,
    count BIGINT NOT NULL,
    hosts BIGINT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    representative_crash_id TEXT NOT NULL
)
;
CREATE INDEX clusters_recent ON clusters (last_seen DESC, id DESC)
;
-- Every fingerprint that joined a cluster (the creator's and the similar ones): the exact lookup.
CREATE TABLE cluster_fingerprints (
    fingerprint TEXT PRIMARY KEY,
    cluster_id TEXT NOT NULL,
    fingerprint_version TEXT NOT NULL,
    similarity DOUBLE PRECISION NOT NULL,
    created_at BIGINT NOT NULL
)
;
CREATE INDEX cluster_fingerprints_cluster ON cluster_fingerprints (cluster_id)
;
-- The similarity index (collector.clustering.bucket_keys): bucket -> clusters filed under it.
CREATE TABLE cluster_buckets (
    bucket TEXT NOT NULL,
    cluster_id TEXT NOT NULL,
    PRIMARY KEY (bucket, cluster_id)
)
;
-- Per-cluster breakdowns: dim is 'host', 'kernel_release', 'hardware' or 'module'.
CREATE TABLE cluster_dims (
    cluster_id TEXT NOT NULL,
    dim TEXT NOT NULL,
    value TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (cluster_id, dim, value)
)
;
CREATE INDEX cluster_dims_value ON cluster_dims (dim, value, cluster_id)
;
-- Occurrences per cluster per UTC day (day = occurred_at / 86400e6): the sparkline.
CREATE TABLE cluster_days (
    cluster_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (cluster_id, day)
)
;
CREATE TABLE crashes (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    cluster_id TEXT NOT NULL,
    host TEXT NOT NULL,
    title TEXT NOT NULL,
    kind TEXT NOT NULL,
    normalized_reason TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    fingerprint_version TEXT NOT NULL,
    frames TEXT NOT NULL,
    source TEXT NOT NULL,
    crash_time BIGINT,
    occurred_at BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    kernel_release TEXT NOT NULL,
    hardware TEXT NOT NULL,
    guilty_frame TEXT NOT NULL,
    modules TEXT NOT NULL,
    host_facts TEXT NOT NULL,
    signature_json TEXT NOT NULL,
    excerpt TEXT NOT NULL,
    symbolized_json TEXT NOT NULL
)
;
CREATE INDEX crashes_recent ON crashes (received_at DESC, id DESC)
;
CREATE INDEX crashes_cluster ON crashes (cluster_id, received_at DESC, id DESC)
;
CREATE INDEX crashes_host ON crashes (host, received_at DESC, id DESC)
;
CREATE TABLE crash_modules (
    module TEXT NOT NULL,
    crash_id TEXT NOT NULL,
    PRIMARY KEY (module, crash_id)
)
;
CREATE TABLE hosts (
    hostname TEXT PRIMARY KEY,
    kernel_release TEXT NOT NULL,
    machine TEXT NOT NULL,
    hardware TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    cpus BIGINT NOT NULL,
    memory_bytes BIGINT NOT NULL,
    modules TEXT NOT NULL,
    last_heartbeat BIGINT,
    crashes BIGINT NOT NULL
)
;
CREATE TABLE host_modules (
    module TEXT NOT NULL,
    hostname TEXT NOT NULL,
    PRIMARY KEY (module, hostname)
)
;
