-- The kernel build each crash ran (the dump's BUILD-ID, '' for a log without one), so that a
-- symbol index uploaded later finds the stored crashes it can symbolize. Rows stored before this
-- column get the build-id their host_facts already recorded (SqlStore._backfill_build_ids).
ALTER TABLE crashes ADD COLUMN build_id TEXT NOT NULL DEFAULT ''
;
CREATE INDEX crashes_build ON crashes (build_id, id)
;
-- Crashes still waiting for their build's index: what a collector looks for when it starts.
CREATE INDEX crashes_unsymbolized ON crashes (build_id, id) WHERE build_id <> '' AND symbolized_json = ''
;
