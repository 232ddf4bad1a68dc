"""Allocation policy: which free VF satisfies each nic a domain requests, and why.

Candidates pass small named filter steps (selector, held, vfio, chosen), each recording what it dropped and
why, then are ranked: sticky (the VF this nic had last), NUMA node of the domain, spread across PFs, least
recently released, address. When nothing is left the NoCandidate error says why (unknown pool, pool empty,
all N VFs held and by whom). Pure: values in, values out; it must never read the host or the ledger itself
(the caller passes the inventory, the leases, sticky and release times).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from .config import Pool
from .errors import NoCandidate
from .inventory import VfInfo
from .leases import Want
from .request import NicRequest

if TYPE_CHECKING:
    from .leases import Lease

_EMPTY: Mapping[str, str] = {}
_NEVER: Mapping[str, float] = {}
_SPECIFICITY = {"vf": 0, "pf": 1, "model": 2, "pool": 3}  # explicit VFs first, so a pool nic cannot take them


@dataclass(frozen=True)
class DomainContext:
    uuid: str
    name: str
    numa_nodes: frozenset[int] = frozenset()  # from <numatune> and the nodes of <vcpu cpuset>; empty: no hint


@dataclass(frozen=True)
class Candidate:
    vf: VfInfo
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Choice:
    """The VF chosen for one nic, and why; with the MAC it gets once the rewriter writes it into the domain
    (rewrite.py: None until then). What the ledger is then asked for is ``want``."""

    nic: NicRequest
    vf: VfInfo
    ranked: tuple[Candidate, ...]  # best first; ranked[0].vf is vf
    dropped: tuple[tuple[str, str, str], ...]  # (step, VF address, why)
    mac: str | None = None

    @property
    def want(self) -> Want:
        return Want(vf=str(self.vf.address), nic_id=self.nic.id, mac=self.mac, vlan=self.nic.vlan)

    def describe(self) -> str:
        """``net0: VF 0000:0a:10.0 (eth2 vf 0), MAC 52:54:00:..``, as vfctl reports a choice."""
        return f"{self.nic.id}: VF {self.vf.address} ({self.vf.pf} vf {self.vf.vf_index}), MAC {self.mac}"


@dataclass(frozen=True)
class Ranking:
    """One nic's outcome: the ranked candidates, what was dropped, or the error when nothing is left."""

    nic: NicRequest
    ranked: tuple[Candidate, ...]
    dropped: tuple[tuple[str, str, str], ...]
    error: NoCandidate | None = None


@dataclass(frozen=True)
class _Facts:
    domain: DomainContext
    pools: Mapping[str, Pool]
    live: Mapping[str, Lease]  # VF -> lease that is not stale
    stale: Mapping[str, Lease]  # VF -> stale lease (claim takes it over)
    pf_load: Mapping[str, int]  # PF -> live leases of other domains
    sticky: Mapping[str, str]
    last_released: Mapping[str, float]
    names: Mapping[int, str]  # id(VfInfo) -> its address as text: formatted once per call, not per step

    def addr(self, vf: VfInfo) -> str:
        name = self.names.get(id(vf))
        return name if name is not None else str(vf.address)


def choose(
    nics: Sequence[NicRequest], vfs: Sequence[VfInfo], leases: Sequence[Lease], domain: DomainContext,
    pools: Sequence[Pool], sticky: Mapping[str, str] = _EMPTY, last_released: Mapping[str, float] = _NEVER,
) -> list[Choice]:
    """One Choice per nic, in order, on distinct VFs. Raises NoCandidate (the first nic that has none)."""
    choices = []
    for ranking in explain(nics, vfs, leases, domain, pools, sticky, last_released):
        if ranking.error is not None:
            raise ranking.error
        choices.append(Choice(ranking.nic, ranking.ranked[0].vf, ranking.ranked, ranking.dropped))
    return choices


def explain(
    nics: Sequence[NicRequest], vfs: Sequence[VfInfo], leases: Sequence[Lease], domain: DomainContext,
    pools: Sequence[Pool], sticky: Mapping[str, str] = _EMPTY, last_released: Mapping[str, float] = _NEVER,
) -> list[Ranking]:
    """Like choose, but never raises: one Ranking per nic, in order (``vfctl explain`` prints them)."""
    names = {id(v): str(v.address) for v in vfs}
    by_address = {names[id(v)]: v for v in vfs}
    live = {lease.vf: lease for lease in leases if not lease.stale}
    pf_load: Counter[str] = Counter()
    for lease in live.values():
        vf = by_address.get(lease.vf)
        if vf is not None and lease.domain_uuid != domain.uuid:
            pf_load[vf.pf] += 1
    own = {lease.nic_id: lease.vf for lease in live.values()
           if lease.domain_uuid == domain.uuid and lease.nic_id is not None}
    facts = _Facts(
        domain=domain,
        pools={p.name: p for p in pools},
        live=live,
        stale={lease.vf: lease for lease in leases if lease.stale},
        pf_load=pf_load,
        sticky={**sticky, **own},  # a VF this nic holds right now beats the one it had before
        last_released=last_released,
        names=names,
    )
    taken: dict[str, str] = {}  # VF -> nic id, chosen earlier in this call
    chosen_pfs: Counter[str] = Counter()
    results: dict[int, Ranking] = {}
    order = sorted(range(len(nics)), key=lambda i: _SPECIFICITY.get(nics[i].selector, 9))
    for i in order:
        ranking = _rank_nic(nics[i], vfs, facts, taken, chosen_pfs)
        if ranking.error is None:
            best = ranking.ranked[0].vf
            taken[facts.addr(best)] = nics[i].id
            chosen_pfs[best.pf] += 1
        results[i] = ranking
    return [results[i] for i in range(len(nics))]


# --- filter steps: each says why a VF is dropped for this nic, or None to keep it --------------------------

_Why = Callable[[NicRequest, VfInfo, _Facts, Mapping[str, str]], "str | None"]  # a string: runs on Python 3.9


def _outside(nic: NicRequest, vf: VfInfo, facts: _Facts, taken: Mapping[str, str]) -> str | None:
    if nic.selector == "pool":
        pool = facts.pools[nic.value]
        return None if pool.admits(vf.pf, vf.model) else f"not in pool {nic.value}"
    if nic.selector == "model":
        return None if vf.model == nic.value else f"model {vf.model}"
    if nic.selector == "pf":
        return None if vf.pf == nic.value else f"on PF {vf.pf}"
    return None if facts.addr(vf) == nic.value else "another VF"


def _held(nic: NicRequest, vf: VfInfo, facts: _Facts, taken: Mapping[str, str]) -> str | None:
    lease = facts.live.get(facts.addr(vf))
    return f"held by {lease.domain_name}" if lease is not None and lease.domain_uuid != facts.domain.uuid else None


def _foreign_vfio(nic: NicRequest, vf: VfInfo, facts: _Facts, taken: Mapping[str, str]) -> str | None:
    # A VF bound to vfio-pci that no live lease explains is passed through by something vfplugin does not
    # know about (a hand-started QEMU, a domain defined before vfplugin): taking it would share the device.
    if vf.driver == "vfio-pci" and facts.addr(vf) not in facts.live:
        return "bound to vfio-pci outside vfplugin"
    return None


def _chosen(nic: NicRequest, vf: VfInfo, facts: _Facts, taken: Mapping[str, str]) -> str | None:
    other = taken.get(facts.addr(vf))
    return f"chosen for nic {other}" if other is not None else None


STEPS: tuple[tuple[str, _Why], ...] = (
    ("selector", _outside),
    ("held", _held),
    ("vfio", _foreign_vfio),
    ("chosen", _chosen),
)


# --- one nic ---------------------------------------------------------------------------------------------


def _rank_nic(
    nic: NicRequest, vfs: Sequence[VfInfo], facts: _Facts, taken: Mapping[str, str], chosen_pfs: Counter[str]
) -> Ranking:
    unknown = _unknown_selector(nic, vfs, facts)
    if unknown is not None:
        return Ranking(nic, (), (), NoCandidate(nic=nic.id, selector=nic.describe(), why=unknown))
    kept = list(vfs)
    dropped: list[tuple[str, str, str]] = []
    selected = 0
    for name, why_dropped in STEPS:
        still = []
        for vf in kept:
            why = why_dropped(nic, vf, facts, taken)
            if why is None:
                still.append(vf)
            else:
                dropped.append((name, facts.addr(vf), why))
        kept = still
        if name == "selector":
            selected = len(kept)
            if not kept:
                error = NoCandidate(nic=nic.id, selector=nic.describe(), why=_empty_selection(nic, facts))
                return Ranking(nic, (), tuple(dropped), error)
    if not kept:
        why = _all_unavailable(nic, selected, [d for d in dropped if d[0] != "selector"])
        return Ranking(nic, (), tuple(dropped), NoCandidate(nic=nic.id, selector=nic.describe(), why=why))
    ranked = sorted(kept, key=lambda vf: _key(nic, vf, facts, chosen_pfs))
    return Ranking(nic, tuple(Candidate(vf, _reasons(nic, vf, facts, chosen_pfs)) for vf in ranked),
                   tuple(dropped))


def _key(nic: NicRequest, vf: VfInfo, facts: _Facts, chosen_pfs: Counter[str]) -> tuple[object, ...]:
    address = facts.addr(vf)
    sticky = 0 if facts.sticky.get(nic.id) == address else 1
    numa = 0 if not facts.domain.numa_nodes or vf.numa_node in facts.domain.numa_nodes else 1
    load = facts.pf_load.get(vf.pf, 0) + chosen_pfs.get(vf.pf, 0)
    released = facts.last_released.get(address, float("-inf"))  # never released counts as oldest
    return (sticky, numa, load, released, vf.address)


def _reasons(nic: NicRequest, vf: VfInfo, facts: _Facts, chosen_pfs: Counter[str]) -> tuple[str, ...]:
    address = facts.addr(vf)
    reasons = []
    if facts.sticky.get(nic.id) == address:
        reasons.append(f"sticky: nic {nic.id} had it last")
    nodes = facts.domain.numa_nodes
    if nodes:
        wanted = ",".join(str(n) for n in sorted(nodes))
        if vf.numa_node is None:
            reasons.append(f"NUMA node unknown (domain on {wanted})")
        elif vf.numa_node in nodes:
            reasons.append(f"NUMA node {vf.numa_node} matches the domain's {wanted}")
        else:
            reasons.append(f"NUMA node {vf.numa_node} is not the domain's {wanted}")
    load, mine = facts.pf_load.get(vf.pf, 0), chosen_pfs.get(vf.pf, 0)
    reasons.append(f"PF {vf.pf}: {load} lease{'s' if load != 1 else ''} of other domains"
                   + (f" + {mine} chosen for this domain" if mine else ""))
    released = facts.last_released.get(address)
    if released is None:
        reasons.append("never released")
    else:
        when = datetime.fromtimestamp(released, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        reasons.append(f"last released {when}")
    stale = facts.stale.get(address)
    if stale is not None and stale.domain_uuid != facts.domain.uuid:
        reasons.append(f"stale lease of {stale.domain_name} will be taken over")
    return tuple(reasons)


# --- explanations ------------------------------------------------------------------------------------------


def _unknown_selector(nic: NicRequest, vfs: Sequence[VfInfo], facts: _Facts) -> str | None:
    """The selector names something this host does not have at all."""
    if nic.selector == "pool":
        if nic.value not in facts.pools:
            names = ", ".join(facts.pools) or "none"
            return f"unknown pool {nic.value!r} (configured pools: {names})"
        return None
    if nic.selector == "model":
        if not any(vf.model == nic.value for vf in vfs):
            models = ", ".join(repr(m) for m in sorted({vf.model for vf in vfs})) or "none"
            return f"unknown model {nic.value!r} (models of the managed VFs: {models})"
        return None
    if nic.selector == "pf":
        if not any(vf.pf == nic.value for vf in vfs):
            pfs = ", ".join(sorted({vf.pf for vf in vfs})) or "none"
            return f"PF {nic.value} is not managed or has no VFs (PFs with VFs: {pfs})"
        return None
    if not any(facts.addr(vf) == nic.value for vf in vfs):
        return f"VF {nic.value} is not managed (not a VF of a PF in sriov_nics or ovs_offload_nics)"
    return None


def _empty_selection(nic: NicRequest, facts: _Facts) -> str:
    pool = facts.pools[nic.value]
    pfs = "PF " + ", ".join(pool.pfs) if pool.pfs else "the managed PFs"
    model = f" with model {pool.model!r}" if pool.model else ""
    return f"pool {nic.value} is empty (no VF of {pfs}{model})"


def _scope(nic: NicRequest) -> str:
    return {"pool": f"pool {nic.value}", "model": f"model {nic.value!r}", "pf": f"PF {nic.value}"}.get(
        nic.selector, f"VF {nic.value}")


def _all_unavailable(nic: NicRequest, total: int, dropped: list[tuple[str, str, str]]) -> str:
    if nic.selector == "vf":
        return f"VF {nic.value} is {dropped[0][2]}" if dropped else f"VF {nic.value} is unavailable"
    holders = sorted({why[len("held by "):] for step, _, why in dropped if step == "held"})
    counts = Counter(step for step, _, _ in dropped)
    held = f"held (by {_names(holders)})"
    noun = "VF" if total == 1 else f"{total} VFs"
    every = "the only" if total == 1 else "all"
    if set(counts) == {"held"}:
        return f"{every} {noun} of {_scope(nic)} {'is' if total == 1 else 'are'} {held}"
    parts = []
    if counts["held"]:
        parts.append(f"{counts['held']} {held}")
    if counts["vfio"]:
        parts.append(f"{counts['vfio']} bound to vfio-pci outside vfplugin")
    if counts["chosen"]:
        parts.append(f"{counts['chosen']} chosen for other nics of this domain")
    return f"{every} {noun} of {_scope(nic)} {'is' if total == 1 else 'are'} unavailable: {', '.join(parts)}"


def _names(names: Sequence[str], shown: int = 5) -> str:
    if len(names) <= shown:
        return ", ".join(names)
    return ", ".join(names[:shown]) + f" and {len(names) - shown} more"
