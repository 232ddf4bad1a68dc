"""``vfctl reconcile``: make the ledger, the running domains, sysfs and OVS agree again; report every fix.

The work is vfplugin.reconcile.reconcile (shared with the agent); this command prints its Report: every fix,
then every failure, one line each, then a summary, and exits 1 if anything failed. Run at boot after libvirtd
(vfplugin-reconcile.service) and by hand.
"""

from __future__ import annotations

import argparse
import sys

from . import config

HELP = "repair the ledger against running domains, sysfs and OVS (stale, leaked and missing leases/ports)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="report what would be fixed, change nothing")


def run(args: argparse.Namespace) -> int:
    from ..reconcile import reconcile

    report = reconcile(config(args), args.connect, dry_run=args.dry_run)
    for line in report.fixes:
        print(line)
    for line in report.failures:
        print(f"failed: {line}")
    print(report.summary())
    sys.stdout.flush()
    if report.failures:
        print(f"vfctl: reconcile: {len(report.failures)} failed (see the lines above)", file=sys.stderr)
        return 1
    return 0
