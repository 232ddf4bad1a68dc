"""``vfctl start DOMAIN``: keep or re-choose the domain's VFs (sticky), redefine if they changed, start it."""

from __future__ import annotations

import argparse

from . import config, host, network_ports, open_ledger

HELP = "start a defined domain, choosing free VFs again for any nic whose VF another domain holds"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("domain", help="domain name")


def run(args: argparse.Namespace) -> int:
    from .. import virt
    from ..domxml import parse_domain
    from ..errors import LibvirtError
    from ..rewrite import assign_and_reserve

    cfg = config(args)
    with virt.connect(args.connect) as conn:
        dom = virt.lookup(conn, args.domain)
        if virt.call("state", dom.isActive):
            raise LibvirtError(problem=f"domain {args.domain!r} is already running")
        before = virt.xml(dom, inactive=True)
        domain = parse_domain(before, source=f"domain {args.domain}")
        choices = []
        if domain.has_request():
            sysfs, inventory = host(cfg)
            with open_ledger(cfg) as ledger:
                ledger.record_vfs(inventory.vfs)
                choices = assign_and_reserve(domain, cfg, inventory.vfs, ledger, sysfs.cpu_nodes())
            after = domain.to_bytes()
            if after != before:
                virt.call(f"redefine {args.domain}", conn.defineXML, after.decode("utf-8"))
            network_ports(cfg, args.connect)
        virt.call(f"start {args.domain}", dom.create)
    print(f"Domain '{args.domain}' started")
    for a in choices:
        print(f"  {a.describe()}")
    return 0
