"""``vfctl host apply``: make this host's VF counts and eswitch modes what the configuration says (at boot).

Run by ``vfplugin-host.service`` (oneshot, before libvirtd/virtqemud and vfplugind); vfplugin/hoststate.py
does the work. Prints one line per change; a PF that cannot be changed is one line on stderr and exit 1,
the other PFs are still done.
"""

from __future__ import annotations

import argparse
import sys

from . import config as load_config

HELP = "host state: apply (load vfio-pci, create the configured VFs, set eswitch modes; at boot)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="host_command", metavar="OPERATION")
    sub.required = True
    apply = sub.add_parser("apply", help="make VF counts and eswitch modes what vfs/eswitch in the configuration say")
    apply.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    apply.add_argument("--force", action="store_true", help="even on a PF whose VFs a domain holds")
    apply.add_argument("--wait", metavar="SECONDS", default="0",
                       help="wait up to SECONDS for the configured PFs to appear (at boot drivers are still probing)")


def run(args: argparse.Namespace) -> int:
    from ..addresses import parse_int
    from ..hoststate import apply, wait_for
    from .list_vfs import read_leases

    cfg = load_config(args)
    wait = parse_int(args.wait, "--wait", 0, 3600)
    if not cfg.host_pfs:
        print("host: no vfs or eswitch in the configuration; nothing to do")
    missing = wait_for(cfg, wait) if wait else []
    held = {vf: lease.domain_name for vf, lease in read_leases(cfg).items()}
    outcome = apply(cfg, held=held, force=args.force, dry_run=args.dry_run)
    for line in outcome.done:
        print(("would: " if args.dry_run else "") + line)
    for line in outcome.failures:
        print(f"vfctl: {line}", file=sys.stderr)
    if not outcome.done and not outcome.failures and cfg.host_pfs and not missing:
        print("host: already as configured")
    return 1 if outcome.failures else 0
