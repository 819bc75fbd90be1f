"""`crashfleet recluster`: re-sign every stored crash with the current rules and rebuild clusters.

Run it after upgrading to a release whose FINGERPRINT_VERSION or CLUSTER_RULES_VERSION changed.
It works on the database directly (one transaction: other collectors wait, nothing half-moved)
and prints which crashes left which cluster.
"""

from __future__ import annotations

import argparse
import sys

HELP = "re-fingerprint stored crashes with the current rules, rebuild clusters, print what moved"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True, help="sqlite:///RELATIVE, sqlite:////ABSOLUTE or postgresql://USER@HOST/DB")
    parser.add_argument("--json", action="store_true", help="JSON Lines: one object per move, then a summary")


def run(args: argparse.Namespace) -> int:
    import json

    from analysis.fingerprint import FINGERPRINT_VERSION
    from collector.clustering import CLUSTER_RULES_VERSION
    from collector.ingest import resign_stored
    from collector.store import StoreError, open_store

    try:
        store = open_store(args.db)
        try:
            report = store.recluster(resign_stored())
        finally:
            store.close()
    except StoreError as exc:
        print(f"crashfleet recluster: {exc}", file=sys.stderr)
        return 1
    out = sys.stdout
    if args.json:
        for m in report.moves:
            out.write(json.dumps({"from": m.old_cluster_id, "from_title": m.old_title, "to": m.new_cluster_id,
                                  "to_title": m.new_title, "crashes": m.crashes}) + "\n")  # fmt: skip
        out.write(json.dumps({
            "crashes": report.crashes, "clusters_before": report.clusters_before,
            "clusters_after": report.clusters_after, "refingerprinted": report.refingerprinted,
            "moved": sum(m.crashes for m in report.moves), "failed": [list(f) for f in report.failed],
            "fingerprint_version": FINGERPRINT_VERSION, "cluster_rules_version": CLUSTER_RULES_VERSION,
        }) + "\n")  # fmt: skip
    else:
        for m in report.moves:
            out.write(f"moved {m.crashes} crash(es) {m.old_cluster_id} -> {m.new_cluster_id}  "
                      f"{m.old_title!r} -> {m.new_title!r}\n")  # fmt: skip
        for crash_id, reason in report.failed:
            out.write(f"kept {crash_id} in place: cannot re-sign ({reason})\n")
        out.write(
            f"{report.crashes} crashes re-signed with {FINGERPRINT_VERSION}/{CLUSTER_RULES_VERSION}: "
            f"{report.refingerprinted} new fingerprints, {sum(m.crashes for m in report.moves)} moved, "
            f"clusters {report.clusters_before} -> {report.clusters_after}\n"
        )
    return 1 if report.failed else 0
