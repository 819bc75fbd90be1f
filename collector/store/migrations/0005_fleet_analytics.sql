-- Fleet analytics (collector.analytics, collector.store.analytics; docs/analytics.md).
-- Exposure: seconds of host time per UTC day (day = µs / 86400e6) and attribute value, and per
-- day and host profile (the whole set of values a host ran, by id); `hosts` counts each host once
-- per day and value (or profile). Written when a host's uncredited stretch is credited (its
-- profile changed, its day ended, an hour passed, or its heartbeats stopped), never per
-- heartbeat. Kept for the retention (default 400 days, SqlStore.purge_exposure).
CREATE TABLE exposure_days (
    day BIGINT NOT NULL,
    dim TEXT NOT NULL,
    value TEXT NOT NULL,
    seconds BIGINT NOT NULL,
    hosts BIGINT NOT NULL,
    PRIMARY KEY (dim, day, value)
)
;
CREATE TABLE exposure_profiles (
    id TEXT PRIMARY KEY,
    attrs TEXT NOT NULL,
    created_at BIGINT NOT NULL
)
;
CREATE TABLE exposure_profile_days (
    day BIGINT NOT NULL,
    profile TEXT NOT NULL,
    seconds BIGINT NOT NULL,
    hosts BIGINT NOT NULL,
    PRIMARY KEY (day, profile)
)
;
-- Per host: the profile and start of its uncredited stretch, the day and profile it was last
-- counted under, its lifetime credited seconds, and what its last heartbeat said beyond the
-- hosts row (labels, hardware-error counts: JSON objects).
CREATE TABLE host_exposure (
    hostname TEXT PRIMARY KEY,
    profile TEXT NOT NULL,
    since BIGINT NOT NULL,
    counted_day BIGINT NOT NULL,
    counted_profile TEXT NOT NULL,
    seconds BIGINT NOT NULL,
    labels TEXT NOT NULL,
    hardware_errors TEXT NOT NULL
)
;
-- Triage by cluster id: kept across recluster (a cluster's id derives from its creating fingerprint).
CREATE TABLE cluster_triage (
    cluster_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    fixed_in TEXT NOT NULL,
    note TEXT NOT NULL,
    link TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    regressed_release TEXT NOT NULL
)
;
-- Rates and suspects read a window of crashes by when they happened.
CREATE INDEX crashes_occurred ON crashes (occurred_at, cluster_id)
;
-- The bad-host list reads only hosts with some evidence: several crashes, or hardware errors.
CREATE INDEX hosts_crashes ON hosts (crashes)
;
CREATE INDEX host_exposure_errors ON host_exposure (hostname) WHERE hardware_errors <> '{}'
;
