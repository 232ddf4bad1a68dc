"""``vfctl release (--domain D | --vf ADDR)``: free leases by hand, with a journal entry; say what was freed.

For a domain that is gone for good, a lease stuck after a crash, or a VF taken back from a reservation. Each
freed lease is undone as the hook's ``release end`` undoes it (configure.unconfigure): its representor leaves
OVS and the VF settings saved in the lease are put back. A domain still running keeps its VF, so the command
warns when it frees an active lease. Nothing held is not an error (exit 0), but it is said; a representor or a
setting that could not be put back is one line each and exit 1.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import config as load_config
from . import network_ports

HELP = "free VF leases by hand (journaled): all of a domain's (--domain), or one VF (--vf)"
REASON = "released by hand (vfctl release)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--domain", metavar="D", help="every lease of this domain (name or UUID)")
    which.add_argument("--vf", metavar="ADDR", help="the lease of this VF, whoever holds it (PCI address)")


def describe(lease: Any) -> str:
    nic = f"nic {lease.nic_id}" if lease.nic_id else "adopted hostdev"
    stale = ", stale" if lease.stale else ""
    return f"released VF {lease.vf} of domain {lease.domain_name} ({nic}, {lease.state} lease{stale})"


def run(args: argparse.Namespace) -> int:
    from ..addresses import PciAddress, canonical_uuid

    cfg = load_config(args)
    vf = str(PciAddress.parse(args.vf)) if args.vf else None
    from ..ledger import Ledger, exists

    if not exists(cfg.ledger):
        print(f"nothing to release: there is no ledger at {cfg.ledger} (no VF was ever allocated)")
        return 0

    with Ledger.open(cfg.ledger, ttl=cfg.reservation_ttl, create=False) as ledger:
        if vf is not None:
            lease = ledger.release_vf(vf, REASON)
            freed = [lease] if lease is not None else []
            if not freed:
                print(f"VF {vf} was not held by any domain; nothing released")
        else:
            domain = args.domain
            try:
                uuids, name = [canonical_uuid(domain)], None
            except ValueError:  # a name
                uuids = sorted({x.domain_uuid for x in ledger.leases() if x.domain_name == domain})
                name = domain
            freed = []
            for uuid in uuids:
                freed += ledger.release(uuid, reason=REASON, domain_name=name)
            if not uuids:  # a name the ledger does not know: journal the attempt all the same
                ledger.journal("release", "noop", domain_name=domain, detail=f"{REASON}: no lease held")
            if not freed:
                print(f"domain {domain} holds no VF lease; nothing released")
    if freed:
        network_ports(cfg, args.connect)
    from ..configure import unconfigure
    from ..sysfs import Sysfs

    problems = []
    sysfs = Sysfs(cfg.sysfs_root)
    for lease in freed:
        print(describe(lease))
        problems += unconfigure(cfg, sysfs, lease, None)
    if any(x.state == "active" and not x.stale for x in freed):
        print("vfctl: warning: an active lease was freed; if its domain still runs, it keeps using the VF "
              "until it stops (check with 'virsh list')", file=sys.stderr)
    for problem in problems:
        print(f"vfctl: {problem}", file=sys.stderr)
    return 1 if problems else 0
