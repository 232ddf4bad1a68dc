"""Choosing VFs for a domain's requests and writing them into its XML: the rewriter's policy in one place.

Used before a start (``vfctl rewrite/define/start/attach``) and by the hook where libvirt lets it rewrite
the XML (``migrate begin``, ``restore begin``). It reads the ledger (leases, sticky history) and the
inventory it is given, asks the allocator, materializes the choices in the domain (in place), and reserves
them; a race lost to another process (VfBusy at reserve) is retried with fresh leases a bounded number of
times. It never talks to libvirt.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from .allocator import Choice, DomainContext, choose
from .config import Config
from .domxml import Domain, generate_mac
from .errors import VfBusy
from .inventory import VfInfo
from .ledger import Ledger, Want
from .log import LOG

if TYPE_CHECKING:
    from .request import NicRequest

RESERVE_ATTEMPTS = 5


@dataclass(frozen=True)
class Assignment:
    choice: Choice
    mac: str

    @property
    def want(self) -> Want:
        nic = self.choice.nic
        return Want(vf=str(self.choice.vf.address), nic_id=nic.id, mac=self.mac, vlan=nic.vlan)


def domain_uuid(domain: Domain) -> str:
    """The domain's UUID; a domain written without one gets one now (libvirt would invent it at define)."""
    if domain.uuid is None:
        domain.set_uuid(str(uuidlib.uuid4()))
    assert domain.uuid is not None
    return domain.uuid


def numa_nodes(domain: Domain, cpu_nodes: Mapping[int, int]) -> frozenset[int]:
    """NUMA nodes the domain is pinned to: <numatune> nodes plus the nodes of its <vcpu cpuset>."""
    hint = domain.numa_hint()
    return frozenset(hint.nodeset) | frozenset(cpu_nodes[c] for c in hint.cpuset if c in cpu_nodes)


def assign(
    domain: Domain,
    nics: Sequence[NicRequest],
    config: Config,
    vfs: Sequence[VfInfo],
    ledger: Ledger,
    cpu_nodes: Mapping[int, int],
) -> list[Assignment]:
    """Choose a VF and a MAC for each of ``nics`` and write them into ``domain``. Reserves nothing."""
    uuid = domain_uuid(domain)
    refs = domain.hostdevs()
    current = {r.nic_id: str(r.address) for r in refs if r.nic_id}
    current_macs = {r.nic_id: r.mac for r in refs if r.nic_id and r.mac}
    # Hand-written hostdevs of this domain are its own (adopted): never hand them to one of its requests too.
    adopted = {str(r.address) for r in refs if r.nic_id is None}
    leases = ledger.leases()
    # Sticky: the VF the nic has in the XML now, else the one it held last.
    sticky = {**ledger.sticky(uuid), **current}
    context = DomainContext(uuid=uuid, name=domain.name, numa_nodes=numa_nodes(domain, cpu_nodes))
    choices = choose(
        nics, [v for v in vfs if str(v.address) not in adopted], leases, context, config.pools,
        sticky=sticky, last_released=ledger.last_released(),
    )
    taken_macs = {lease.mac for lease in leases if lease.domain_uuid != uuid and lease.mac}
    assignments = []
    for choice in choices:
        nic = choice.nic
        mac = nic.mac or current_macs.get(nic.id) or generate_mac(config.mac_prefix, uuid, nic.id, taken_macs)
        taken_macs.add(mac)
        domain.materialize(nic, choice.vf.address, mac)
        assignments.append(Assignment(choice, mac))
        LOG.info("nic %s of %s -> VF %s (%s)", nic.id, domain.name, choice.vf.address, "; ".join(choice.ranked[0].reasons))
    return assignments


def assign_and_reserve(
    domain: Domain,
    config: Config,
    vfs: Sequence[VfInfo],
    ledger: Ledger,
    cpu_nodes: Mapping[int, int],
    nics: Optional[Sequence[NicRequest]] = None,
) -> list[Assignment]:
    """``assign`` every request (or ``nics``) and reserve the VFs for the domain, retrying lost races."""
    wanted = list(domain.requests() if nics is None else nics)
    if not wanted:
        return []
    for attempt in range(1, RESERVE_ATTEMPTS + 1):
        assignments = assign(domain, wanted, config, vfs, ledger, cpu_nodes)
        try:
            ledger.reserve(domain_uuid(domain), domain.name, [a.want for a in assignments])
            return assignments
        except VfBusy as busy:  # another process reserved it between our read and our write
            if attempt == RESERVE_ATTEMPTS:
                raise
            LOG.info("reserve lost a race (%s); choosing again (attempt %d)", busy, attempt + 1)
    raise AssertionError("unreachable")
