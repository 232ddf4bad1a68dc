"""``vfctl reconcile``: make the ledger, the running domains, sysfs and OVS agree again; report every fix.

Three-way check (DESIGN.md section 4): stale leases (another boot, expired reservations) go; active leases of
domains that are not running are released (their VF settings put back); VFs that running domains use but the
ledger lacks are claimed for them; vfplugin's OVS ports of domains that are not running are removed and
missing ones of running domains plugged. Run at boot after libvirtd (vfplugin-reconcile.service) and by hand.
"""

from __future__ import annotations

import argparse
from typing import Any

from . import config, host, open_ledger

HELP = "repair the ledger against running domains, sysfs and OVS (stale, leaked and missing leases/ports)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="report what would be fixed, change nothing")


def running_holdings(uri: str, cfg: Any, sysfs: Any) -> dict[str, tuple[str, list[Any]]]:
    """uuid -> (name, holdings) for every running domain."""
    from .. import virt
    from ..domread import read_domain
    from ..errors import VfpluginError
    from ..log import LOG
    from ..plan import holdings

    running: dict[str, tuple[str, list[Any]]] = {}
    with virt.connect(uri) as conn:
        for dom in virt.running_domains(conn):
            name, uuid = dom.name(), dom.UUIDString()
            try:
                facts = read_domain(virt.xml(dom), source=f"domain {name}")  # as the hook reads it
                held = holdings(facts, cfg, sysfs.locate)
            except VfpluginError as e:
                LOG.warning("reconcile: %s", e)
                held = []
            running[uuid] = (name, held)
    return running


def run(args: argparse.Namespace) -> int:
    from ..configure import unconfigure
    from ..errors import VfpluginError
    from ..ledger import Want

    cfg = config(args)
    sysfs, inventory = host(cfg)
    fixes: list[str] = []
    dry = args.dry_run
    with open_ledger(cfg) as ledger:
        ledger.record_vfs(inventory.vfs)
        if dry:
            fixes += [
                f"would expire stale lease of {lease.vf} ({lease.domain_name})"
                for lease in ledger.leases()
                if lease.stale
            ]
        else:
            fixes += [
                f"expired stale lease of {lease.vf} held by {lease.domain_name}" for lease in ledger.expire()
            ]
        running = running_holdings(args.connect, cfg, sysfs)

        for lease in ledger.leases():
            if lease.state == "active" and lease.domain_uuid not in running:
                fixes.append(f"released {lease.vf}: domain {lease.domain_name} is not running")
                if not dry:
                    for problem in unconfigure(cfg, sysfs, lease, None):
                        fixes.append(f"  warning: {problem}")
                    ledger.release(lease.domain_uuid, vfs=[lease.vf], reason="reconcile: domain not running")

        held_by = {lease.vf: lease for lease in ledger.leases()}
        for uuid, (name, held) in running.items():
            missing = [
                h
                for h in held
                if held_by.get(h.vf) is None
                or held_by[h.vf].domain_uuid != uuid
                or held_by[h.vf].state != "active"
            ]
            if not missing:
                continue
            fixes.append(f"claimed {', '.join(h.vf for h in missing)} for running domain {name}")
            if not dry:
                try:
                    ledger.claim(
                        uuid, name, [Want(vf=h.vf, nic_id=h.nic_id, mac=h.mac, vlan=h.vlan) for h in missing]
                    )
                    ledger.mark_started(uuid)
                except VfpluginError as e:
                    fixes.append(f"  conflict: {e}")

        if cfg.ovs_offload_nics:
            fixes += _reconcile_ovs(cfg, sysfs, running, dry)
        if not dry:
            ledger.journal("reconcile", "ok", detail=f"{len(fixes)} fixes")
        leaked = [
            lease.vf
            for lease in ledger.leases()
            if lease.state == "active" and lease.domain_uuid not in running
        ]

    for line in fixes:
        print(line)
    print(
        f"reconcile: {len([f for f in fixes if not f.startswith('  ')])} fixed, "
        f"{sum(len(h) for _, h in running.values())} VFs held by {len(running)} running domains, "
        f"{len(leaked)} leaked"
    )
    return 0


def _reconcile_ovs(cfg: Any, sysfs: Any, running: dict[str, tuple[str, list[Any]]], dry: bool) -> list[str]:
    from .. import ovs
    from ..configure import offload_port
    from ..errors import VfpluginError

    wanted = []
    for uuid, (name, held) in running.items():
        for h in held:
            try:
                where = offload_port(cfg, sysfs, h.pf, h.vf)
            except VfpluginError:
                continue
            if where is not None:
                wanted.append(
                    ovs.WantedPort(
                        bridge=where[0],
                        representor=where[1],
                        domain_uuid=uuid,
                        iface_id=f"{name}-{h.nic_id or h.vf}",
                        mac=h.mac or "",
                        vlan=h.vlan,
                    )
                )
    to_unplug, to_plug = ovs.reconcile_plan(ovs.plugged(), wanted)
    fixes = []
    for port in to_unplug:
        fixes.append(f"unplugged OVS port {port.name}: domain {port.vm_uuid} is not running")
        if not dry:
            ovs.unplug(port.name)
    for w in to_plug:
        fixes.append(f"plugged OVS port {w.representor} into {w.bridge} for {w.iface_id}")
        if not dry:
            ovs.plug(
                w.bridge,
                w.representor,
                domain_uuid=w.domain_uuid,
                iface_id=w.iface_id,
                mac=w.mac,
                vlan=w.vlan,
            )
    return fixes
