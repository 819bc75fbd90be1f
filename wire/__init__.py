"""What both daemons and the command line share, below all of them: the crashfleet.v1 API.

`v1` (generated from proto/ by `make proto`), `convert` (the one record <-> protobuf conversion),
`model` (the query and host records the API carries), `channel` (how a client reaches a
collector), `tls` (certificates and peer identity), `grpc_options`, `retry` (the collector's
retry hint, backoff and jitter), and `sdnotify` (systemd readiness and watchdog). It imports
`analysis` and nothing above it: analysis -> wire -> agent | collector -> crashfleet (the
command line).
"""
