"""libvirt network ports in guarded hostdev networks: one allocator's view for libvirt and vfplugin.

libvirt's hostdev network pool picks "the first VF with 0 connections" and knows nothing of the VFs vfplugin
hands out; it also forgets every count when the network restarts while domains still hold their VFs
(DESIGN.md section 1). So every VF that the ledger says is held (reserved or active) and that lies in a
guarded network's pool gets a port in that network, owned by the lease's domain, made with
``virNetworkPortCreateXML(..., VIR_NETWORK_PORT_CREATE_RECLAIM)`` and a ``hostdev-pci`` plug: libvirt counts
the VF as taken and never picks it. The port goes when the lease goes. A lease the network hook took for a
port libvirt made (a domain started on the network) keeps that port's UUID, so after a network restart the
same port comes back and the domain's own stop deletes it.

``sync(conn, cfg, ledger, inventory) -> (fixes, failures)``: bring the ports of every active guarded network
in step with the ledger (create missing, delete stale ones and those of domains that are gone), one line per
fix and per failure; one failure never stops the rest. ``plan`` is the pure part. For ``vfctl`` (define,
start, attach, detach, release, reconcile) and the agent; the hooks never import it (it calls libvirt).
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Callable

from . import NETWORK_HOOK
from .addresses import PciAddress
from .config import Config
from .leases import Lease
from .netdef import NetworkFacts, PortFacts, guarded, in_pool, read

PORT_CREATE_RECLAIM = 1  # VIR_NETWORK_PORT_CREATE_RECLAIM (libvirt >= 5.5)
# vfplugin's reclaim ports get a UUID derived from (network, VF, domain): the same port is made again after a
# restart, and a port with that UUID is known to be vfplugin's own.
_NAMESPACE = uuidlib.UUID("6f1d2a9c-5b7e-4c1a-9a55-3c0f6e0b7d12")


def reclaim_uuid(network_uuid: str, vf: str, domain_uuid: str) -> str:
    return str(uuidlib.uuid5(_NAMESPACE, f"{network_uuid}/{vf}/{domain_uuid}"))


@dataclass(frozen=True)
class Port:
    """A port that exists (read from libvirt) or should (from a lease)."""

    uuid: str
    vf: str
    owner_uuid: str
    owner_name: str
    mac: str | None = None


@dataclass(frozen=True)
class Plan:
    create: tuple[Port, ...] = ()
    delete: tuple[tuple[Port, str], ...] = ()  # (port, why)
    conflicts: tuple[str, ...] = ()  # one line each: a port and a lease that disagree, left alone


def plan(
    network: NetworkFacts,
    ports: Sequence[Port],
    leases: Iterable[Lease],
    locate: Callable[[PciAddress], tuple[str, int] | None],
    domain_exists: Callable[[str], bool],
) -> Plan:
    """Which ports of ``network`` to create and delete so that each held VF of its pool has exactly one port,
    owned by the lease's domain. Pure.

    - a held VF without a port: create one (the lease's own port UUID when the network hook recorded one,
      else a reclaim UUID);
    - a port whose owner domain no longer exists: delete;
    - a port on a VF that no lease holds, or that another domain holds, which vfplugin made (reclaim UUID): delete;
    - a port of a domain that exists on a VF the ledger gives another domain: a conflict, reported, untouched
      (deleting the port of a running domain would not give its VF back).
    """
    net_uuid = network.uuid or network.name
    held = {
        lease.vf: lease for lease in leases
        if not lease.stale and in_pool(network, PciAddress.parse(lease.vf), locate) is not None
    }
    by_vf: dict[str, Port] = {}
    create: list[Port] = []
    delete: list[tuple[Port, str]] = []
    conflicts: list[str] = []
    for port in ports:
        lease = held.get(port.vf)
        if lease is not None and lease.domain_uuid == port.owner_uuid and port.vf not in by_vf:
            by_vf[port.vf] = port
            continue
        if not domain_exists(port.owner_uuid):
            delete.append((port, f"domain {port.owner_name} is gone"))
        elif port.uuid == reclaim_uuid(net_uuid, port.vf, port.owner_uuid):
            why = "no lease" if lease is None else f"the VF is {lease.domain_name}'s now"
            delete.append((port, f"{why} (vfplugin's reclaim port)"))
        elif lease is not None:
            conflicts.append(
                f"network {network.name}: VF {port.vf} has a port of domain {port.owner_name} but the ledger "
                f"gives it to {lease.domain_name}"
            )
    deleted = {p.uuid for p, _ in delete}
    taken = {p.vf for p in ports if p.uuid not in deleted}
    for vf, lease in sorted(held.items()):
        if vf in by_vf or vf in taken:
            continue
        port_uuid = lease.port if lease.network == network.name and lease.port else reclaim_uuid(
            net_uuid, vf, lease.domain_uuid)
        create.append(Port(port_uuid, vf, lease.domain_uuid, lease.domain_name, lease.mac))
    return Plan(tuple(create), tuple(delete), tuple(conflicts))


def port_xml(port: Port) -> str:
    """The ``<networkport>`` that reclaims ``port.vf`` for its owner (formatnetworkport.html)."""
    from xml.sax.saxutils import escape

    address = PciAddress.parse(port.vf).libvirt_attrs()
    attrs = " ".join(f"{k}='{v}'" for k, v in address.items() if k != "type")
    mac = port.mac or "00:00:00:00:00:00"
    return (
        f"<networkport><uuid>{port.uuid}</uuid><owner><name>{escape(port.owner_name)}</name>"
        f"<uuid>{port.owner_uuid}</uuid></owner><mac address='{mac}'/>"
        f"<plug type='hostdev-pci' managed='yes'><address {attrs}/></plug></networkport>"
    )


# --- libvirt ---------------------------------------------------------------------------------------------------


def guarded_networks(conn: Any, cfg: Config, locate: Callable[[PciAddress], tuple[str, int] | None],
                     active_only: bool = True) -> list[tuple[Any, NetworkFacts]]:
    """(libvirt network, facts) of every guarded network (the active ones unless ``active_only`` is False)."""
    from . import virt

    flags = 2 if active_only else 0  # VIR_CONNECT_LIST_NETWORKS_ACTIVE
    out = []
    for net in virt.call("list networks", conn.listAllNetworks, flags):
        facts, _ = read(str(virt.call(f"network {net.name()}", net.XMLDesc, 0)).encode(), f"network {net.name()}")
        if facts is not None and guarded(facts, cfg, locate):
            out.append((net, facts))
    return out


def ports_of(net: Any) -> list[Port]:
    from . import virt

    ports = []
    for p in virt.call(f"list ports of network {net.name()}", net.listAllPorts, 0):
        _, facts = read(str(virt.call("port XML", p.XMLDesc, 0)).encode(), f"a port of network {net.name()}")
        if facts is None or facts.address is None or not facts.owner_uuid:
            continue  # not a hostdev port: not vfplugin's business
        ports.append(Port(facts.uuid or p.getUUIDString(), str(facts.address), facts.owner_uuid,
                          facts.owner_name or facts.owner_uuid, facts.mac))
    return ports


def inventory_locate(inventory: Any) -> Callable[[PciAddress], tuple[str, int] | None]:
    """``locate`` over the inventory of managed VFs: (PF, VF index), or None for any other address."""
    def locate(address: PciAddress) -> tuple[str, int] | None:
        vf = inventory.get(address)
        return (vf.pf, vf.vf_index) if vf is not None else None

    return locate


def domain_lookup(conn: Any) -> Callable[[str], bool]:
    """``domain_exists`` for ``plan``: whether libvirt knows a domain of this UUID (a port whose owner is gone
    is stale)."""
    def domain_exists(uuid: str) -> bool:
        try:
            conn.lookupByUUIDString(uuid)
            return True
        except Exception:  # libvirtError: no such domain
            return False

    return domain_exists


def sync(conn: Any, cfg: Config, ledger: Any, inventory: Any, dry_run: bool = False) -> tuple[list[str], list[str]]:
    """Bring every active guarded network's ports in step with ``ledger``; returns (fixes, failures), one line
    each. Never raises for one network or one port; a libvirt connection that fails at once raises."""
    from . import virt
    from .errors import VfpluginError

    fixes: list[str] = []
    failures: list[str] = []
    locate = inventory_locate(inventory)
    domain_exists = domain_lookup(conn)

    for net, network in guarded_networks(conn, cfg, locate):
        try:
            todo = plan(network, ports_of(net), ledger.leases(), locate, domain_exists)
        except VfpluginError as e:
            failures.append(f"network {network.name}: {e}")
            continue
        failures += list(todo.conflicts)
        would = "would " if dry_run else ""
        for port, why in todo.delete:
            line = f"{would}delete port {port.uuid} of {port.owner_name} on {port.vf} in network {network.name}: {why}"
            if not dry_run:
                try:
                    p = virt.call(f"port {port.uuid}", net.portLookupByUUIDString, port.uuid)
                    virt.call(f"delete port {port.uuid}", p.delete, 0)
                except VfpluginError as e:
                    failures.append(f"network {network.name}: {e}")
                    continue
            fixes.append(line)
        for port in todo.create:
            line = (f"{would}create port {port.uuid} in network {network.name}: {port.vf} is held by "
                    f"{port.owner_name}")
            if not dry_run:
                try:
                    virt.call(f"network {network.name}: reclaim {port.vf} for {port.owner_name}",
                              net.portCreateXML, port_xml(port), PORT_CREATE_RECLAIM)
                except VfpluginError as e:
                    # another repair (the agent, or the reconcile a network start spawned) made it meanwhile?
                    if not any(p.vf == port.vf and p.owner_uuid == port.owner_uuid for p in _ports_or_none(net)):
                        failures.append(str(e))
                    continue
            fixes.append(line)
    return fixes, failures


def _ports_or_none(net: Any) -> list[Port]:
    from .errors import VfpluginError

    try:
        return ports_of(net)
    except VfpluginError:
        return []


def sync_now(cfg: Config, uri: str) -> list[str]:
    """For vfctl commands that just changed the ledger: sync, and give back the failures as warning lines
    (the command's own work is done; a port that could not be made is repaired by ``vfctl reconcile``)."""
    from . import virt
    from .errors import VfpluginError
    from .inventory import discover
    from .ledger import Ledger, exists
    from .sysfs import Sysfs

    try:
        if not exists(cfg.ledger):
            return []
        inventory = discover(cfg, Sysfs(cfg.sysfs_root))
        with virt.connect(uri) as conn, Ledger.open(cfg.ledger, ttl=cfg.reservation_ttl) as ledger:
            return sync(conn, cfg, ledger, inventory)[1]
    except VfpluginError as e:
        return [str(e)]


__all__ = ["Plan", "Port", "PortFacts", "doctor_checks", "plan", "port_xml", "reclaim_uuid", "sync", "sync_now"]


# --- vfctl doctor ------------------------------------------------------------------------------------------------


def doctor_checks(conn: Any, cfg: Config, inventory: Any, leases: Sequence[Lease],
                  hook: str = NETWORK_HOOK) -> list[Any]:
    """Doctor lines: the network hook installed, and for each guarded network whether its ports match the
    ledger (libvirt's connection count with them). A missing hook fails only when a network needs it."""
    import os

    from .checks import FAIL, OK, WARN, Check
    from .errors import VfpluginError

    locate = inventory_locate(inventory)
    domain_exists = domain_lookup(conn)

    try:
        networks = guarded_networks(conn, cfg, locate, active_only=False)
    except VfpluginError as e:
        return [Check("hostdev networks", WARN, f"cannot list libvirt's networks: {e}")]
    out = []
    installed = os.access(hook, os.X_OK)
    if installed:
        out.append(Check("network hook", OK, hook))
    else:
        status = FAIL if networks else WARN
        why = f"{len(networks)} guarded network(s) need it" if networks else "no guarded network needs it yet"
        out.append(Check("network hook", status, f"{hook} is not installed ({why})", "vfctl install-hook"))
    for net, network in networks:
        label = f"network {network.name}"
        try:
            active = bool(net.isActive())
            ports = ports_of(net) if active else []
        except Exception as e:  # libvirtError or VfpluginError: one network must not hide the others
            out.append(Check(label, WARN, f"cannot read its ports: {e}"))
            continue
        if not active:
            out.append(Check(label, WARN, "guarded hostdev network, not active", f"virsh net-start {network.name}"))
            continue
        todo = plan(network, ports, leases, locate, domain_exists)
        held = sum(1 for p in ports if all(p != d for d, _ in todo.delete))
        facts = f"guarded; {len(ports)} ports, libvirt counts {network.connections} connections"
        if todo.create or todo.delete or todo.conflicts:
            problems = [f"{len(todo.create)} held VFs without a port"] if todo.create else []
            problems += [f"{len(todo.delete)} stale ports"] if todo.delete else []
            problems += list(todo.conflicts)
            out.append(Check(label, FAIL, f"{facts}; {'; '.join(problems)} (libvirt may pick a VF vfplugin gave "
                             "out)", "vfctl reconcile"))
        else:
            out.append(Check(label, OK, f"{facts}; every VF the ledger holds in its pool has one ({held})"))
    return out
