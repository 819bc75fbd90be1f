"""The `crashfleet` command and the versioned wire API (`crashfleet.v1`, generated from proto/)."""
