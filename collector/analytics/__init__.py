"""Fleet analytics: crash rates over exposure, suspects, regression windows, bad hosts, triage.

A pure library over plain records (no SQL, no network): the store (collector.store.analytics)
reads what it needs and hands it here, the gRPC servicer, the CLI and the benchmarks render the
results. docs/analytics.md explains every method and its parameters.
"""
