"""The crashfleet collector: gRPC ingest, durable store, dedupe, clustering, queries, web page, metrics."""
