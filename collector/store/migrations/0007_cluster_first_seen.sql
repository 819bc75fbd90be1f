-- The clusters first seen since a time: the gauge of new clusters' crash rate over their first
-- day (collector.analytics.newclusters, crashfleet_new_cluster_rate_per_1000_host_days) reads
-- them at every gauge refresh, a range of this index instead of the whole clusters table.
CREATE INDEX clusters_first_seen ON clusters (first_seen)
;
