"""Choosing VFs for a domain's requests and writing them into its XML: the rewriter's policy in one place.

Used before a start (``vfctl rewrite/define/start/attach``) and by the hook where libvirt lets it rewrite
the XML (``migrate begin``, ``restore begin``). It reads the ledger (leases, sticky history) and the
inventory it is given, asks the allocator, materializes the choices in the domain (in place), and reserves
them in the same ledger transaction. It never talks to libvirt.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .allocator import Choice, DomainContext, choose
from .config import Config
from .domxml import Domain, generate_mac
from .inventory import VfInfo
from .leases import Lease, Snapshot, Want
from .ledger import Ledger
from .log import LOG

if TYPE_CHECKING:
    from .request import NicRequest


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


def _bound_by_hand(domain: Domain, nics: Sequence[NicRequest]) -> list[NicRequest]:
    """The vf= requests that name one of the domain's hand-written hostdevs: that hostdev is their VF already."""
    adopted = {str(r.address) for r in domain.hostdevs() if r.nic_id is None}
    return [nic for nic in nics if nic.selector == "vf" and nic.value in adopted]


@dataclass(frozen=True)
class Inputs:
    """What the allocator is asked for a domain's ``nics``: the one rule ``vfctl define`` (``_choose_and_write``) and
    ``vfctl explain`` both follow, so that explain says what define does."""

    nics: list[NicRequest]  # to choose a VF for
    bound: list[NicRequest]  # vf= requests naming a hand-written hostdev of the domain: that is their VF
    vfs: list[VfInfo]  # candidates: neither the domain's hand-written hostdevs nor VFs its other nics keep
    sticky: dict[str, str]  # nic id -> the VF it has in the XML now, else the one it held last


def inputs(domain: Domain, nics: Sequence[NicRequest], vfs: Sequence[VfInfo], history: Mapping[str, str]) -> Inputs:
    refs = domain.hostdevs()
    current = {r.nic_id: str(r.address) for r in refs if r.nic_id}
    # Hand-written hostdevs of this domain are its own (adopted): never hand them to one of its requests too...
    adopted = {str(r.address) for r in refs if r.nic_id is None}
    # ... except to a vf= request naming one of them: that hostdev already is the request's VF.
    bound = _bound_by_hand(domain, nics)
    rest = [nic for nic in nics if nic not in bound]
    # Nor a VF another of its nics keeps (attach plans one nic while the others stay where they are).
    planned = {nic.id for nic in rest}
    busy = adopted | {str(r.address) for r in refs if r.nic_id and r.nic_id not in planned}
    return Inputs(
        nics=rest,
        bound=bound,
        vfs=[v for v in vfs if str(v.address) not in busy],
        sticky={**history, **current},
    )


def _choose_and_write(
    domain: Domain,
    nics: Sequence[NicRequest],
    config: Config,
    vfs: Sequence[VfInfo],
    leases: Sequence[Lease],
    history: Mapping[str, str],
    last_released: Mapping[str, float],
    cpu_nodes: Mapping[int, int],
) -> list[Choice]:
    """Choose a VF and a MAC for each of ``nics`` from these facts and write them into ``domain``."""
    uuid = domain_uuid(domain)
    current_macs = {r.nic_id: r.mac for r in domain.hostdevs() if r.nic_id and r.mac}
    given = inputs(domain, nics, vfs, history)
    context = DomainContext(uuid=uuid, name=domain.name, numa_nodes=numa_nodes(domain, cpu_nodes))
    choices = choose(
        given.nics,
        given.vfs,
        leases,
        context,
        config.pools,
        sticky=given.sticky,
        last_released=last_released,
    )
    taken_macs = {lease.mac for lease in leases if lease.domain_uuid != uuid and lease.mac}
    chosen = []
    for choice in choices:
        nic = choice.nic
        taken = taken_macs | domain.macs(except_nic=nic.id)  # never the MAC of another interface of the domain
        mac = nic.mac or current_macs.get(nic.id) or generate_mac(config.mac_prefix, uuid, nic.id, taken)
        taken_macs.add(mac)
        domain.materialize(nic, choice.vf.address, mac)
        chosen.append(replace(choice, mac=mac))
        LOG.info(
            "nic %s of %s -> VF %s (%s)",
            nic.id,
            domain.name,
            choice.vf.address,
            "; ".join(choice.ranked[0].reasons),
        )
    return chosen


def assign(
    domain: Domain,
    nics: Sequence[NicRequest],
    config: Config,
    vfs: Sequence[VfInfo],
    ledger: Ledger,
    cpu_nodes: Mapping[int, int],
) -> list[Choice]:
    """Choose VFs for ``nics`` against the ledger now, write them into ``domain``; reserve nothing."""
    _materialize_networks(domain, config, ledger, [n for n in nics if n.selector == "network"])
    return _choose_and_write(
        domain,
        [n for n in nics if n.selector != "network"],
        config,
        vfs,
        ledger.leases(),
        ledger.sticky(domain_uuid(domain)),
        ledger.last_released(),
        cpu_nodes,
    )


def _materialize_networks(domain: Domain, config: Config, ledger: Ledger, nics: Sequence[NicRequest]) -> None:
    """``network=`` nics: an ``<interface type='network'>`` with the nic's MAC (kept, given or generated),
    VLAN and alias; libvirt's hostdev network picks the VF at start, so nothing is reserved here."""
    if not nics:
        return
    uuid = domain_uuid(domain)
    taken = {lease.mac for lease in ledger.leases() if lease.domain_uuid != uuid and lease.mac}
    current = domain.owned_macs()
    for nic in nics:
        mac = nic.mac or current.get(nic.id) or generate_mac(
            config.mac_prefix, uuid, nic.id, taken | domain.macs(except_nic=nic.id))
        domain.materialize_network(nic, mac)
        LOG.info("nic %s of %s -> network %s, MAC %s", nic.id, domain.name, nic.value, mac)


def assign_and_reserve(
    domain: Domain,
    config: Config,
    vfs: Sequence[VfInfo],
    ledger: Ledger,
    cpu_nodes: Mapping[int, int],
    nics: Sequence[NicRequest] | None = None,
) -> list[Choice]:
    """``assign`` every request (or ``nics``) and reserve the VFs, choosing inside the ledger's write
    transaction so that domains defined at the same moment never get the same VF (no retry loop)."""
    if nics is None:
        domain.drop_stale()  # interfaces of nics no longer requested go with their request
    wanted = list(domain.requests() if nics is None else nics)
    _materialize_networks(domain, config, ledger, [n for n in wanted if n.selector == "network"])
    wanted = [n for n in wanted if n.selector != "network"]
    if not wanted:
        return []
    result: list[Choice] = []
    bound = [Want(vf=n.value, nic_id=n.id, mac=n.mac, vlan=n.vlan) for n in _bound_by_hand(domain, wanted)]

    def pick(snapshot: Snapshot) -> list[Want]:
        result[:] = _choose_and_write(
            domain, wanted, config, vfs, snapshot.leases, snapshot.sticky, snapshot.last_released, cpu_nodes
        )
        return [a.want for a in result] + bound

    ledger.allocate(domain_uuid(domain), domain.name, pick)
    return result
