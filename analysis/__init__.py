"""crashfleet's analysis library: kernel logs and crash dumps in, typed crash records out.

Pure and dependency-light: nothing here imports grpc, the agent or the collector, so
`crashfleet inspect` and `crashfleet dmesg` start fast and both daemons can share it.
"""
