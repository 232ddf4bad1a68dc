"""``vfctl rewrite FILE [--reserve]``: print the domain XML with a VF materialized for each request."""

from __future__ import annotations

import argparse
import sys

from . import config, host, open_ledger, read_domain_file

HELP = "print FILE with a VF chosen for each vfplugin request (--reserve: also reserve them for the domain)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="domain XML with a <vfp:nics xmlns:vfp='urn:vfplugin:1'> request")
    parser.add_argument("--reserve", action="store_true", help="reserve the chosen VFs for the domain's UUID")


def run(args: argparse.Namespace) -> int:
    from ..rewrite import assign, assign_and_reserve

    cfg = config(args)
    domain = read_domain_file(args.file)
    sysfs, inventory = host(cfg)
    with open_ledger(cfg) as ledger:
        ledger.record_vfs(inventory.vfs)
        if args.reserve:
            assign_and_reserve(domain, cfg, inventory.vfs, ledger, sysfs.cpu_nodes())
        else:
            domain.drop_stale()
            assign(domain, domain.requests(), cfg, inventory.vfs, ledger, sysfs.cpu_nodes())
    # bytes as they are: a document declared ISO-8859-1 comes out in ISO-8859-1, its declaration unchanged
    sys.stdout.flush()
    sys.stdout.buffer.write(domain.to_bytes())
    sys.stdout.buffer.flush()
    return 0
