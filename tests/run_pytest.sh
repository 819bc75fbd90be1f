#!/usr/bin/env bash
# Runs pytest and refuses pytest's "no tests ran" (exit 5) as a pass.
set -u
py="$1"; shift
"$py" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi
exit "$rc"
