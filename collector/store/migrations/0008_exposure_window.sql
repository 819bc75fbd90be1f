-- Analytics read a window of days of exposure_profile_days whole (suspects: per profile; rates:
-- per day). Its primary key (day, profile) finds the rows, but on SQLite each row was then a
-- second lookup in the table for `seconds` and `hosts`: 24,000 of them for 800 profiles over 30
-- days. This index holds the columns those reads need, so the window is one range of it (bench/
-- analytics_bench.py: the fleet rate and suspects). A credit updates it with its row.
CREATE INDEX exposure_profile_days_window ON exposure_profile_days (day, profile, seconds, hosts)
;
-- The bad-host list reads the hosts with several crashes by name: with the name in the index
-- (which is rewritten whenever a host's crash count changes, as hosts_crashes was) that range
-- needs no lookup of each host's row.
CREATE INDEX hosts_crashes_hostname ON hosts (crashes, hostname)
;
DROP INDEX hosts_crashes
;
