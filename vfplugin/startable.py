"""Whether a defined domain can start, and which VFs to offer it when it cannot: vfplugind's policy, pure.

A stopped domain is *startable* when every nic it requests has a VF written in its persistent XML that is on
this host and that no live lease of another domain holds: the hook's claim at ``prepare begin`` takes a free
VF (or one reserved for this very domain) without any reservation. So the agent keeps pointers, not
reservations: several stopped domains may point at one VF, the first to start claims it, and the agent then
re-points the others. A reservation per stopped domain would lock the pool for domains that are not starting.

When the agent (re)chooses, it prefers VFs that no other stopped domain points at (``tiers``), so that a start
rarely leaves others to re-point; the allocator (allocator.py, through rewrite.py) still ranks inside a tier
(sticky, NUMA, spread). Values in, values out: agent.py reads libvirt and the ledger, this module decides.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .domread import DomainFacts
    from .inventory import VfInfo
    from .leases import Lease

# journal actions of the agent: a request given its first VF, a VF taken by another domain replaced
MATERIALIZE, REPOINT = "materialize", "repoint"
ACTIONS = (MATERIALIZE, REPOINT)


@dataclass(frozen=True)
class Defined:
    """One defined domain as the agent last read it: its persistent XML's facts and whether it runs."""

    uuid: str
    name: str
    active: bool
    facts: DomainFacts

    @property
    def pointers(self) -> dict[str, str]:
        """nic id -> the VF its persistent XML points at (a vf= request bound to a hand-written hostdev
        points at that hostdev)."""
        found = {ref.nic_id: str(ref.address) for ref in self.facts.hostdevs if ref.nic_id}
        by_hand = {str(ref.address) for ref in self.facts.hostdevs if ref.nic_id is None}
        for nic in self.facts.requests:
            if nic.id not in found and nic.selector == "vf" and nic.value in by_hand:
                found[nic.id] = nic.value
        return found


def live_leases(leases: Iterable[Lease]) -> dict[str, Lease]:
    """VF -> its lease, for the leases a claim cannot take over (stale ones it can)."""
    return {lease.vf: lease for lease in leases if not lease.stale}


def why_not_startable(domain: Defined, live: Mapping[str, Lease], known: Iterable[str]) -> str | None:
    """Why this stopped domain's start would be refused for want of a VF; None when it is startable (or runs,
    or asks for nothing)."""
    if domain.active or not domain.facts.requests:
        return None
    on_host = known if isinstance(known, (set, frozenset)) else set(known)
    pointers = domain.pointers
    networked = {nic_id for nic_id, _ in domain.facts.network_macs}
    for nic in domain.facts.requests:
        if nic.selector == "network":  # libvirt's hostdev network picks the VF at start: only its interface
            if nic.id not in networked:
                return f"nic {nic.id} has no interface on network {nic.value}"
            continue
        vf = pointers.get(nic.id)
        if vf is None:
            return f"nic {nic.id} has no VF chosen"
        if vf not in on_host:
            return f"nic {nic.id}: VF {vf} is not on this host"
        lease = live.get(vf)
        if lease is not None and lease.domain_uuid != domain.uuid:
            return f"nic {nic.id}: VF {vf} is held by {lease.domain_name}"
    return None


def action(domain: Defined) -> str:
    """The journal's word for making this domain startable: its first VF, or another one."""
    return REPOINT if domain.pointers else MATERIALIZE


def pointed_at(domains: Iterable[Defined], except_uuid: str) -> Counter[str]:
    """VF -> how many other stopped domains point at it."""
    count: Counter[str] = Counter()
    for d in domains:
        if d.uuid != except_uuid and not d.active:
            count.update(set(d.pointers.values()))
    return count


def tiers(vfs: Sequence[VfInfo], pointed: Mapping[str, int], own: Iterable[str]) -> list[list[VfInfo]]:
    """The VFs to offer, fewest other pointers first: tier k holds every VF that at most the k-th smallest
    count of other stopped domains point at, plus the domain's own (keeping its VF is never a reason to move);
    the last tier is every VF."""
    mine = set(own)
    levels = sorted({pointed.get(str(v.address), 0) for v in vfs})
    return [[v for v in vfs if pointed.get(str(v.address), 0) <= level or str(v.address) in mine] for level in levels]


def pending(events: Iterable[object]) -> dict[str, object]:
    """domain UUID -> the agent's latest journal entry for it, when that entry is a failure (the request it
    could not satisfy, shown by ``vfctl doctor``). ``events`` oldest first."""
    latest: dict[str, object] = {}
    for e in events:
        uuid = getattr(e, "domain_uuid", None)
        if uuid and getattr(e, "action", None) in ACTIONS:
            latest[uuid] = e
    return {uuid: e for uuid, e in latest.items() if getattr(e, "outcome", None) == "failed"}
