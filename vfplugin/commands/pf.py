"""``vfctl pf set-vfs PF N``: create N VFs on a PF (through sysfs, going via 0 as the kernel requires).

Changing a non-zero count destroys every VF of the PF first, so it is refused while the ledger says a
domain holds one of them (``--force`` overrides, e.g. after the domains are gone and before a reconcile).
"""

from __future__ import annotations

import argparse

from . import config as load_config

HELP = "PF operations: set-vfs PF N (create N VFs, 0 removes them)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="pf_command", metavar="OPERATION")
    sub.required = True
    set_vfs = sub.add_parser("set-vfs", help="write sriov_numvfs (via 0 when changing a non-zero count)")
    set_vfs.add_argument("pf", metavar="PF", help="the PF's netdev name, e.g. eth2")
    set_vfs.add_argument("n", metavar="N", help="number of VFs, 0 to sriov_totalvfs")
    set_vfs.add_argument("--force", action="store_true", help="even if a domain holds one of its VFs")


def run(args: argparse.Namespace) -> int:
    from ..addresses import parse_ifname, parse_int
    from ..errors import HostError
    from ..sysfs import Sysfs
    from .list_vfs import read_leases

    cfg = load_config(args)
    name = parse_ifname(args.pf, "PF name")
    n = parse_int(args.n, "number of VFs", 0, 65535)
    sysfs = Sysfs(cfg.sysfs_root)
    pf = sysfs.pf(name)
    if n == pf.num_vfs:
        print(f"{name}: already {n} VFs (of {pf.total_vfs})")
        return 0
    if pf.num_vfs and not args.force:
        leases = read_leases(cfg)
        held = [f"{v.address} ({leases[str(v.address)].domain_name})"
                for v in pf.vfs if str(v.address) in leases]
        if held:
            raise HostError(
                problem=f"PF {name!r}: changing the VF count removes every VF, and domains hold "
                f"{', '.join(held)}; stop them first, or add --force"
            )
    sysfs.set_num_vfs(name, n)
    print(f"{name}: {pf.num_vfs} -> {n} VFs (of {pf.total_vfs})")
    return 0
