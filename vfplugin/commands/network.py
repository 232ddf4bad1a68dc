"""``vfctl network define POOL`` and ``vfctl network list``: vfplugin pools as libvirt hostdev networks.

A pool becomes an autostarted hostdev network (``<forward mode='hostdev' managed='yes'>``) listing the pool's
VFs as ``<address>`` entries, ordered round-robin over the PFs: libvirt gives each start "the first entry with
0 connections", so consecutive starts spread over PFs. Any libvirt client then gets a free VF of the pool with
``<interface type='network'><source network='vfp-POOL'/></interface>``; the network hook guards it and
netports.sync gives the VFs vfplugin hands out otherwise a port, so the two never collide. libvirt picks the
VF, so NUMA cannot be chosen per domain on this path: ``--numa-node N`` makes a network of one node's VFs.
A pool whose VFs changed is redefined with the new list, restarting the network, while it has no port; with
ports allocated it is refused, naming them (a restart would forget them while domains hold their VFs).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import config as load_config

HELP = "pools as libvirt hostdev networks: define POOL [--name NAME] [--numa-node N], list [--json], sync"


def _inventory(cfg: Any) -> Any:
    # not commands.host(): the "host" command's module shadows that helper once it is imported
    from ..inventory import discover
    from ..sysfs import Sysfs

    return discover(cfg, Sysfs(cfg.sysfs_root))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="network_command", metavar="OPERATION")
    sub.required = True
    define = sub.add_parser("define", help="write an autostarted hostdev network listing the pool's VFs")
    define.add_argument("pool", metavar="POOL", help="a pool of the configuration")
    define.add_argument("--name", help="the network's name (default vfp-POOL, vfp-POOL-nodeN with --numa-node)")
    define.add_argument("--numa-node", type=int, metavar="N", help="only the pool's VFs on NUMA node N")
    listing = sub.add_parser("list", help="libvirt's hostdev networks, guarded or not, with ports and leases")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    sync = sub.add_parser("sync", help="give guarded networks a port for every VF vfplugin holds, drop stale ones")
    sync.add_argument("--dry-run", action="store_true", help="report what would be fixed, change nothing")


def run(args: argparse.Namespace) -> int:
    if args.network_command == "sync":
        return sync_ports(args)
    return define(args) if args.network_command == "define" else list_networks(args)


def sync_ports(args: argparse.Namespace) -> int:
    """Only the ports (netports.sync), nothing else of reconcile: what the network hook starts after a guarded
    network (re)started (vfplugin-netports.service), safe to run while domains start and stop."""
    from .. import virt
    from ..ledger import Ledger
    from ..netports import sync

    cfg = load_config(args)
    inventory = _inventory(cfg)
    with virt.connect(args.connect) as conn, Ledger.open(cfg.ledger, ttl=cfg.reservation_ttl) as ledger:
        fixes, failures = sync(conn, cfg, ledger, inventory, dry_run=args.dry_run)
    for line in fixes:
        print(line)
    for line in failures:
        print(f"failed: {line}")
    print(f"network sync: {len(fixes)} fixed, {len(failures)} failed")
    return 1 if failures else 0


def pool_order(vfs: list[Any]) -> list[Any]:
    """The pool's VFs round-robin over their PFs (each PF's in VF index order): pure."""
    by_pf: dict[str, list[Any]] = {}
    for vf in sorted(vfs, key=lambda v: (v.pf, v.vf_index)):
        by_pf.setdefault(vf.pf, []).append(vf)
    columns = list(by_pf.values())
    out = []
    for i in range(max((len(c) for c in columns), default=0)):
        out += [c[i] for c in columns if i < len(c)]
    return out


def network_xml(name: str, vfs: list[Any]) -> str:
    from xml.sax.saxutils import escape

    addresses = "".join(
        "\n    <address " + " ".join(f"{k}='{v}'" for k, v in vf.address.libvirt_attrs().items()) + "/>"
        for vf in vfs
    )
    return (
        f"<network>\n  <name>{escape(name)}</name>\n  <forward mode='hostdev' managed='yes'>\n"
        f"    <driver name='vfio'/>{addresses}\n  </forward>\n</network>\n"
    )


def define(args: argparse.Namespace) -> int:
    from .. import virt
    from ..addresses import parse_name
    from ..errors import InvalidValue, LibvirtError
    from ..ledger import Ledger
    from ..netdef import read
    from ..netports import ports_of, sync

    cfg = load_config(args)
    pool = parse_name(args.pool, "pool name")
    if cfg.pool(pool) is None:
        raise InvalidValue(what="pool", value=pool, problem=f"not in the configuration (pools: "
                           f"{', '.join(p.name for p in cfg.pools) or 'none'})")
    suffix = f"-node{args.numa_node}" if args.numa_node is not None else ""
    name = parse_name(args.name or f"vfp-{pool}{suffix}", "network name")
    inventory = _inventory(cfg)
    vfs = [v for v in inventory.vfs if pool in v.pools
           and (args.numa_node is None or v.numa_node == args.numa_node)]
    if not vfs:
        where = f" on NUMA node {args.numa_node}" if args.numa_node is not None else ""
        raise InvalidValue(what="pool", value=pool,
                           problem=f"has no VFs{where} on this host (vfctl list --pool {pool})")
    ordered = pool_order(vfs)
    xml = network_xml(name, ordered)
    with virt.connect(args.connect) as conn:
        existing = None
        try:
            existing = conn.networkLookupByName(name)
        except Exception:  # libvirtError: no such network
            existing = None
        action = "defined"
        if existing is not None:
            facts, _ = read(str(virt.call(f"network {name}", existing.XMLDesc, 2)).encode(),  # INACTIVE
                            f"network {name}")
            if facts is not None and list(facts.addresses) == [v.address for v in ordered]:
                action = "unchanged"
            else:
                ports = ports_of(existing) if virt.call(f"network {name}", existing.isActive) else []
                if ports:
                    held = ", ".join(f"{p.vf} ({p.owner_name})" for p in ports[:5])
                    raise LibvirtError(
                        problem=f"network {name}: the pool's VFs changed but {len(ports)} ports are allocated "
                        f"({held}); restarting it now would forget them while domains hold their VFs: stop "
                        "those domains (or vfctl release their VFs) and run this again"
                    )
                action = "updated"
        if action != "unchanged":
            net = virt.call(f"define network {name}", conn.networkDefineXML, xml)
            if action == "updated" and virt.call(f"network {name}", net.isActive):
                virt.call(f"stop network {name}", net.destroy)
        net = virt.call(f"network {name}", conn.networkLookupByName, name)
        virt.call(f"autostart network {name}", net.setAutostart, 1)
        if not virt.call(f"network {name}", net.isActive):
            virt.call(f"start network {name}", net.create)
        with Ledger.open(cfg.ledger, ttl=cfg.reservation_ttl) as ledger:
            fixes, failures = sync(conn, cfg, ledger, inventory)
    pfs = sorted({v.pf for v in ordered})
    print(f"Network '{name}' {action}: {len(ordered)} VFs of pool {pool} on {', '.join(pfs)}, autostarted")
    for line in fixes:
        print(f"  {line}")
    for line in failures:
        print(f"vfctl: network {name}: {line}", file=sys.stderr)
    print(f"  use it with <interface type='network'><source network='{name}'/></interface>")
    return 1 if failures else 0


def list_networks(args: argparse.Namespace) -> int:
    from .. import virt
    from ..errors import VfpluginError
    from ..ledger import Ledger, exists
    from ..netdef import guarded, read
    from ..netports import inventory_locate, ports_of

    cfg = load_config(args)
    inventory = _inventory(cfg)
    locate = inventory_locate(inventory)
    leases = []
    if exists(cfg.ledger):
        with Ledger.open(cfg.ledger, ttl=cfg.reservation_ttl) as ledger:
            leases = ledger.leases()
    rows = []
    with virt.connect(args.connect) as conn:
        for net in virt.call("list networks", conn.listAllNetworks, 0):
            try:
                facts, _ = read(str(virt.call(f"network {net.name()}", net.XMLDesc, 0)).encode(),
                                f"network {net.name()}")
            except VfpluginError as e:
                print(f"vfctl: {e}", file=sys.stderr)
                continue
            if facts is None or not facts.hostdev:
                continue
            active = bool(virt.call(f"network {facts.name}", net.isActive))
            ports = ports_of(net) if active else []
            on = guarded(facts, cfg, locate)
            pool = {str(a) for a in facts.addresses} if facts.addresses else {
                str(v.address) for v in inventory.vfs if v.pf in facts.pfs}
            rows.append({
                "name": facts.name, "active": active, "guarded": on,
                "pfs": list(facts.pfs), "vfs": len(pool) if (facts.addresses or on) else None,
                # libvirt leaves connections='0' out of a live network's XML
                "connections": (facts.connections or 0) if active else None, "ports": len(ports),
                "leases": sum(1 for lease in leases if lease.vf in pool and not lease.stale),
            })
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    print(f"{'NETWORK':<20} {'STATE':<9} {'GUARDED':<8} {'VFS':>4} {'CONNECTIONS':>11} {'PORTS':>5} {'LEASES':>6}")
    for r in rows:
        print(f"{r['name']:<20} {'active' if r['active'] else 'inactive':<9} {'yes' if r['guarded'] else 'no':<8} "
              f"{'-' if r['vfs'] is None else r['vfs']:>4} "
              f"{'-' if r['connections'] is None else r['connections']:>11} {r['ports']:>5} {r['leases']:>6}")
    return 0
