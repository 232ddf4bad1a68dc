"""``vfctl define FILE``: choose VFs, reserve them, and define the domain in libvirt."""

from __future__ import annotations

import argparse

from . import config, host, network_ports, open_ledger, read_domain_file

HELP = "choose and reserve VFs for FILE's requests, then define the domain in libvirt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="domain XML with a <vfp:nics xmlns:vfp='urn:vfplugin:1'> request")


def run(args: argparse.Namespace) -> int:
    from .. import virt
    from ..rewrite import assign_and_reserve, domain_uuid

    cfg = config(args)
    domain = read_domain_file(args.file)
    sysfs, inventory = host(cfg)
    with virt.connect(args.connect) as conn, open_ledger(cfg) as ledger:
        ledger.record_vfs(inventory.vfs)
        choices = assign_and_reserve(domain, cfg, inventory.vfs, ledger, sysfs.cpu_nodes())
        try:
            virt.call(f"define {domain.name}", conn.defineXML, domain.to_text())
        except Exception:
            ledger.release(domain_uuid(domain), reason="define failed")
            raise
    network_ports(cfg, args.connect)
    print(f"Domain '{domain.name}' defined from {args.file}")
    for a in choices:
        print(f"  {a.describe()}")
    return 0

