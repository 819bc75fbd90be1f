-- Hosts point at a shared, content-addressed module set instead of carrying their own copy.
--
-- Before: every host stored its module list twice (hosts.modules JSON, and one host_modules row
-- per module), about 3.9 KB per host with 51 modules, and a new host (or a module change) ran
-- `DELETE FROM host_modules WHERE hostname = ?`, which scanned the table: the only index led
-- with `module`. A fleet runs few distinct module sets, so each distinct set is stored once,
-- keyed by a hash of its sorted names (collector.store.sql.module_set_id), and a host row holds
-- that key: onboarding a host whose set is known writes one hosts row; a module change writes
-- one hosts column (and the new set, once for the whole fleet).
--
-- The data step `host_module_sets` (collector/store/sql.py) then moves every host's stored list
-- into module_sets, and drops hosts.modules and host_modules.
CREATE TABLE module_sets (
    id TEXT PRIMARY KEY,
    modules TEXT NOT NULL,
    module_count BIGINT NOT NULL,
    created_at BIGINT NOT NULL
)
;
-- The members of each set, for "hosts with module M" (and the analytics that join on it).
CREATE TABLE module_set_members (
    set_id TEXT NOT NULL,
    module TEXT NOT NULL,
    PRIMARY KEY (set_id, module)
)
;
CREATE INDEX module_set_members_module ON module_set_members (module, set_id)
;
ALTER TABLE hosts ADD COLUMN module_set TEXT NOT NULL DEFAULT ''
;
-- Which hosts run a set: the module filter of ListHosts and the sweep of unused sets.
CREATE INDEX hosts_module_set ON hosts (module_set, hostname)
;
