-- Why each fingerprint joined its cluster, and the secondary fingerprint of a rule transition.
-- cluster_fingerprints.reason: 'created' (the fingerprint that made the cluster), 'similar'
-- (collector.clustering's rule: same bug class and guilty frame), 'secondary' (its fingerprint
-- under the previous rule edition is this cluster's); `detail` says what matched, `guilty_frame`
-- is the guilty frame of the crash that brought the fingerprint ('' before this migration: a
-- secondary match is refused when another guilty frame already joined that way). Rows stored
-- before this migration: the cluster's own fingerprint is 'created', every other 'similar'.
ALTER TABLE cluster_fingerprints ADD COLUMN reason TEXT NOT NULL DEFAULT ''
;
ALTER TABLE cluster_fingerprints ADD COLUMN detail TEXT NOT NULL DEFAULT ''
;
ALTER TABLE cluster_fingerprints ADD COLUMN guilty_frame TEXT NOT NULL DEFAULT ''
;
UPDATE cluster_fingerprints SET reason = 'created'
WHERE fingerprint IN (SELECT fingerprint FROM clusters)
;
UPDATE cluster_fingerprints SET reason = 'similar' WHERE reason = ''
;
-- The crash's fingerprint under the previous rule edition (analysis.editions), '' when it has
-- none or it equals the current one.
ALTER TABLE crashes ADD COLUMN secondary_fingerprint TEXT NOT NULL DEFAULT ''
;
-- When this database first met each fingerprint version that has a previous edition: the start
-- of its transition window (collector.config transition_days).
CREATE TABLE rule_transitions (
    version TEXT PRIMARY KEY,
    previous_version TEXT NOT NULL,
    started_at BIGINT NOT NULL
)
;
