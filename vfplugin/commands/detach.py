"""``vfctl detach DOMAIN --nic ID``: remove a vfplugin nic (hot-unplug with --live), ledger too."""

from __future__ import annotations

import argparse

from .. import ALIAS_PREFIX
from . import config, network_ports, open_ledger
from .attach import flags

HELP = "remove a vfplugin nic from a domain: interface detached, request dropped, VF released (--live/--config)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("domain", help="domain name")
    parser.add_argument("--nic", required=True, help="the nic id (as in the request and the alias ua-vfplugin-ID)")
    parser.add_argument("--live", action="store_true", help="hot-unplug from the running domain")
    parser.add_argument("--config", dest="persistent", action="store_true", help="change the persistent definition")


def run(args: argparse.Namespace) -> int:
    from .. import virt
    from ..configure import unconfigure
    from ..domxml import parse_domain
    from ..errors import VfpluginError
    from ..request import metadata_fragment
    from ..sysfs import Sysfs

    cfg = config(args)
    with virt.connect(args.connect) as conn:
        dom = virt.lookup(conn, args.domain)
        running = bool(virt.call("state", dom.isActive))
        live, persistent = flags(running, args.live, args.persistent)
        released = []
        for affect, inactive in ((live, False), (persistent, True)):
            if not affect:
                continue
            domain = parse_domain(virt.xml(dom, inactive=inactive), source=f"domain {args.domain}")
            nic = next((n for n in domain.requests() if n.id == args.nic), None)
            ref = next((r for r in domain.hostdevs() if r.nic_id == args.nic), None)
            if nic is None and ref is None:
                where = "definition" if inactive else "running domain"
                raise VfpluginError(detail=f"the {where} of {args.domain!r} has no vfplugin nic {args.nic!r}")
            flag = virt.AFFECT_CONFIG if inactive else virt.AFFECT_LIVE
            if ref is not None:
                # by alias: exact, and independent of what else the interface carries (virsh detach-device-alias)
                virt.call(f"detach {args.nic} from {args.domain}", dom.detachDeviceAlias, ALIAS_PREFIX + args.nic, flag)
            rest = [n for n in domain.requests() if n.id != args.nic]
            virt.set_request_metadata(dom, metadata_fragment(rest) if rest else None, flag)
            if ref is not None and (not inactive or not running):
                released.append((domain.uuid or args.domain, str(ref.address)))
        if released:
            sysfs = Sysfs(cfg.sysfs_root)  # no discovery: only the released VFs are looked up
            with open_ledger(cfg) as ledger:
                for uuid, vf in released:
                    lease = ledger.lease(vf)
                    if lease is not None and lease.domain_uuid == uuid:
                        for problem in unconfigure(cfg, sysfs, lease, None):
                            print(f"vfctl: warning: {problem}")
                    ledger.release(uuid, vfs=[vf], reason=f"detached {args.nic}")
    if released:
        network_ports(cfg, args.connect)
    print(f"detached {args.nic} from {args.domain}")
    return 0
