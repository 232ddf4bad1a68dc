"""Reconcile: make the ledger, the running domains, sysfs and OVS agree again; a Report of every fix and failure.

The core of ``vfctl reconcile`` (vfplugin/commands/reconcile.py prints it) and of any long-lived caller (the
agent after a libvirtd reconnect): ``reconcile(cfg, uri, dry_run=False) -> Report``. Three-way check
(DESIGN.md section 4): stale leases (another boot, expired reservations) go; active leases of domains that are
not running are released (their VF settings put back, their representor unplugged); VFs that running domains
use but the ledger lacks are claimed for them; vfplugin's OVS ports (``external_ids:vfplugin=1``) of domains
that are not running are removed and missing ones of running domains plugged.

Every step runs whatever an earlier one did: one failure (a conflict, an unreachable ovsdb, a port that will
not plug) is one line in ``Report.failures`` and the rest goes on. Each fix is one line in ``Report.fixes``.
With ``dry_run`` nothing changes and the fixes say "would". This module reads libvirt (virt.py): the hook must
never import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import Config


@dataclass
class Report:
    """What one reconcile fixed and what it could not: one line each, in the order they happened."""

    fixes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    running: int = 0  # running domains seen
    held: int = 0  # VFs they hold
    leaked: int = 0  # active leases of domains that are not running, left after the run

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        return (
            f"reconcile: {len(self.fixes)} fixed, {len(self.failures)} failed, "
            f"{self.held} VFs held by {self.running} running domains, {self.leaked} leaked"
        )


Running = dict[str, tuple[str, list[Any]]]  # uuid -> (name, holdings)


def running_holdings(uri: str, cfg: Config, sysfs: Any, report: Report | None = None) -> Running:
    """uuid -> (name, holdings) for every running domain; a domain whose XML is unusable holds nothing
    (a failure line in ``report`` when given)."""
    from . import virt
    from .domread import read_domain
    from .errors import VfpluginError
    from .log import LOG
    from .plan import holdings

    running: Running = {}
    with virt.connect(uri) as conn:
        for dom in virt.running_domains(conn):
            name, uuid = dom.name(), dom.UUIDString()
            try:
                facts = read_domain(virt.xml(dom), source=f"domain {name}")  # as the hook reads it
                held = holdings(facts, cfg, sysfs.locate)
            except VfpluginError as e:
                LOG.warning("reconcile: %s", e)
                if report is not None:
                    report.failures.append(f"cannot read running domain {name}: {e}")
                held = []
            running[uuid] = (name, held)
    return running


def reconcile(cfg: Config, uri: str, dry_run: bool = False) -> Report:
    """One pass over the ledger, the running domains of ``uri`` and OVS; never raises for a single failure.

    Raises VfpluginError only when nothing can be checked at all (no libvirt connection, unusable ledger)."""
    from .inventory import discover
    from .ledger import Ledger
    from .sysfs import Sysfs

    report = Report()
    sysfs = Sysfs(cfg.sysfs_root)
    inventory = discover(cfg, sysfs)
    with Ledger.open(cfg.ledger, ttl=cfg.reservation_ttl) as ledger:
        ledger.record_vfs(inventory.vfs)
        _expire(ledger, report, dry_run)
        running = running_holdings(uri, cfg, sysfs, report)
        _release_not_running(cfg, sysfs, ledger, running, report, dry_run)
        _claim_running(ledger, running, report, dry_run)
        _reconcile_ovs(cfg, sysfs, running, report, dry_run)
        _reconcile_ports(cfg, uri, ledger, inventory, report, dry_run)
        if not dry_run:
            outcome = "ok" if report.ok else "failed"
            ledger.journal(
                "reconcile", outcome, detail=f"{len(report.fixes)} fixes, {len(report.failures)} failures"
            )
        report.leaked = sum(
            1 for lease in ledger.leases() if lease.state == "active" and lease.domain_uuid not in running
        )
    report.running = len(running)
    report.held = sum(len(h) for _, h in running.values())
    return report


# --- the steps: each appends to the report and lets the next one run -----------------------------------------


def _reconcile_ports(cfg: Config, uri: str, ledger: Any, inventory: Any, report: Report, dry: bool) -> None:
    """Guarded hostdev networks: a port for every held VF of their pools, none for VFs nobody holds
    (netports.py); after a network restart this gives libvirt its counts back."""
    from . import virt
    from .errors import VfpluginError
    from .netports import sync

    try:
        with virt.connect(uri) as conn:
            fixes, failures = sync(conn, cfg, ledger, inventory, dry_run=dry)
    except VfpluginError as e:
        report.failures.append(f"network ports: {e}")
        return
    report.fixes += fixes
    report.failures += failures


def _expire(ledger: Any, report: Report, dry: bool) -> None:
    if dry:
        report.fixes += [
            f"would expire stale lease of {lease.vf} ({lease.domain_name})" for lease in ledger.leases() if lease.stale
        ]
    else:
        report.fixes += [f"expired stale lease of {lease.vf} held by {lease.domain_name}" for lease in ledger.expire()]


def _release_not_running(cfg: Config, sysfs: Any, ledger: Any, running: Running, report: Report, dry: bool) -> None:
    from .configure import unconfigure
    from .errors import VfpluginError

    for lease in ledger.leases():
        if lease.state != "active" or lease.domain_uuid in running:
            continue
        if dry:
            report.fixes.append(f"would release {lease.vf}: domain {lease.domain_name} is not running")
            continue
        for problem in unconfigure(cfg, sysfs, lease, None):
            report.failures.append(f"release {lease.vf} of {lease.domain_name}: {problem}")
        try:
            ledger.release(lease.domain_uuid, vfs=[lease.vf], reason="reconcile: domain not running")
        except VfpluginError as e:
            report.failures.append(f"release {lease.vf} of {lease.domain_name}: {e}")
            continue
        report.fixes.append(f"released {lease.vf}: domain {lease.domain_name} is not running")


def _claim_running(ledger: Any, running: Running, report: Report, dry: bool) -> None:
    from .errors import VfpluginError

    held_by = {lease.vf: lease for lease in ledger.leases()}
    for uuid, (name, held) in running.items():
        missing = [
            h
            for h in held
            if held_by.get(h.vf) is None or held_by[h.vf].domain_uuid != uuid or held_by[h.vf].state != "active"
        ]
        if not missing:
            continue
        vfs = ", ".join(h.vf for h in missing)
        if dry:
            report.fixes.append(f"would claim {vfs} for running domain {name}")
            continue
        try:
            ledger.claim(uuid, name, [h.want() for h in missing])
            ledger.mark_started(uuid)
        except VfpluginError as e:
            report.failures.append(f"claim {vfs} for running domain {name}: {e}")
            continue
        report.fixes.append(f"claimed {vfs} for running domain {name}")


def _reconcile_ovs(cfg: Config, sysfs: Any, running: Running, report: Report, dry: bool) -> None:
    """vfplugin's ports (external_ids:vfplugin=1) of domains not running go, whatever the configuration says now
    (a PF taken out of ovs_offload_nics leaves its ports behind); missing ones of running domains are plugged."""
    import shutil

    from . import ovs
    from .configure import wanted_port
    from .errors import OvsError, VfpluginError

    if not cfg.ovs_offload_nics and shutil.which("ovs-vsctl") is None:
        return  # no OVS on this host and none configured: no port can exist
    wanted = []
    for uuid, (name, held) in running.items():
        for h in held:
            try:
                spec = wanted_port(cfg, sysfs, uuid, name, h)
            except VfpluginError as e:
                report.failures.append(f"plug {h.vf} of {name}: {e}")
                continue
            if spec is not None:
                wanted.append(spec)
    try:
        to_unplug, to_plug = ovs.reconcile_plan(ovs.plugged(), wanted)
    except OvsError as e:
        if cfg.ovs_offload_nics:
            report.failures.append(f"OVS: {e}")
        # else: OVS is installed but not running, and nothing is configured to use it: nothing to clean up
        return
    except VfpluginError as e:
        report.failures.append(f"OVS: {e}")
        return
    would = "would " if dry else ""
    for port in to_unplug:
        try:
            if not dry:
                ovs.unplug(port.name, owner=port.vm_uuid)
        except VfpluginError as e:
            report.failures.append(f"unplug OVS port {port.name}: {e}")
            continue
        report.fixes.append(f"{would}unplug{'' if dry else 'ged'} OVS port {port.name}: "
                            f"domain {port.vm_uuid} is not running")
    for w in to_plug:
        try:
            if not dry:
                ovs.plug(
                    w.bridge, w.representor, domain_uuid=w.domain_uuid, iface_id=w.iface_id, mac=w.mac, vlan=w.vlan
                )
        except VfpluginError as e:
            report.failures.append(f"plug OVS port {w.representor} into {w.bridge} for {w.iface_id}: {e}")
            continue
        report.fixes.append(f"{would}plug{'' if dry else 'ged'} OVS port {w.representor} into {w.bridge} "
                            f"for {w.iface_id}")
