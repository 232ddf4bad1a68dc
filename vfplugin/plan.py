"""What vfplugin must hold for a domain: its XML + the configuration + where each VF sits -> ``Holding``s.

A domain holds (a) every VF materialized for one of its requests (interface alias ``ua-vfplugin-<id>``) and
(b) every hand-written PCI hostdev that points at a VF of a managed PF (*adopted*, so hand-written and
generated domains cannot share a VF). A request not yet materialized is an error the user fixes with
``vfctl start``. Pure: the caller passes ``locate`` (address -> (PF, VF index) or None), which is a sysfs
lookup in the hook and a dictionary in tests.
"""

from __future__ import annotations

from .errors import NoVfChosen, RequestError
from .record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING would import typing: the hook avoids it (bench_hook)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .addresses import PciAddress
    from .config import Config
    from .domread import DomainFacts
    from .leases import Want
    from .request import NicRequest
    Locate = Callable[[PciAddress], tuple[str, int] | None]


class Holding(Record):
    """A VF the domain holds while it runs, where it sits, and what its XML says of it."""

    address: PciAddress
    pf: str
    vf_index: int
    nic: NicRequest | None  # None: an adopted hand-written hostdev
    kind: str  # "interface" (libvirt sets MAC/VLAN) or "hostdev" (plain: vfplugin sets the MAC if asked)
    mac: str | None
    vlan: int | None

    @property
    def vf(self) -> str:
        return str(self.address)

    @property
    def nic_id(self) -> str | None:
        return self.nic.id if self.nic else None

    def want(self) -> Want:
        """What the ledger is asked for this VF, by the hook at start and by reconcile for a running domain
        alike: the MAC the XML gives it, else the one its nic asks vfplugin to set (a plain hostdev)."""
        from .leases import Want  # here: start begin reads holdings without ever asking the ledger

        mac = self.mac or (self.nic.mac if self.nic else None)
        return Want(vf=self.vf, nic_id=self.nic_id, mac=mac, vlan=self.vlan)

    def iface_id(self, domain_name: str) -> str:
        """The OVS ``external_ids:iface-id`` of this VF's representor port: ``<domain>-<nic id or VF>``."""
        return f"{domain_name}-{self.nic_id or self.vf}"

    def settings(self) -> dict[str, object]:
        """What vfplugin applies through the PF for this VF (libvirt does MAC/VLAN of hostdev interfaces)."""
        if self.nic is None:
            return {}
        settings = self.nic.vf_settings()
        if self.kind == "hostdev" and self.nic.mac:
            settings["mac"] = self.nic.mac
        if self.nic.qos and self.nic.vlan:  # libvirt's <vlan> cannot carry a priority: vfplugin sets both
            settings["vlan"], settings["qos"] = self.nic.vlan, self.nic.qos
        return settings


def holdings(domain: DomainFacts, config: Config, locate: Locate) -> list[Holding]:
    """The VFs the domain holds while it runs; RequestError if a request has no VF materialized yet."""
    requests = {nic.id: nic for nic in domain.requests}
    by_vf_selector = {nic.value: nic for nic in requests.values() if nic.selector == "vf"}
    managed = set(config.managed_pfs)
    held: list[Holding] = []
    seen_nics: set[str] = set()
    for ref in domain.hostdevs:
        where = locate(ref.address)
        nic = requests.get(ref.nic_id) if ref.nic_id else None
        if nic is None and ref.kind == "hostdev":
            # A plain hostdev named by a vf= request is that request's VF (vfplugin then sets its MAC).
            nic = by_vf_selector.get(str(ref.address))
        if where is None or where[0] not in managed:
            if nic is not None:
                raise RequestError(
                    source=f"domain {domain.name}",
                    problem=f"nic {nic.id!r} points at {ref.address}, which is not a VF of a managed PF "
                    f"({', '.join(config.managed_pfs) or 'none configured'})",
                )
            continue  # not ours: a GPU, a VF of an unmanaged PF...
        if nic is not None:
            seen_nics.add(nic.id)
            nic = _with_pool_settings(nic, config)
        held.append(Holding(ref.address, where[0], where[1], nic, ref.kind, ref.mac, ref.vlan))
    # network= nics hold no VF in the XML: libvirt's network picks it at start (the network hook claims it)
    missing = sorted(n for n in set(requests) - seen_nics if requests[n].selector != "network")
    if missing:
        raise NoVfChosen(source=f"domain {domain.name}", nic=missing[0], domain=domain.name)
    return held


def _with_pool_settings(nic: NicRequest, config: Config) -> NicRequest:
    """A VF taken from a pool gets the pool's settings where its request says nothing (config ``settings``)."""
    pool = config.pool(nic.value) if nic.selector == "pool" else None
    if pool is None or not pool.settings:
        return nic
    from .request import with_defaults

    return with_defaults(nic, pool.settings)


def duplicates(held: Sequence[Holding]) -> str | None:
    """A VF listed twice in one domain (libvirt would refuse too, but later and less clearly)."""
    seen: set[str] = set()
    for h in held:
        if h.vf in seen:
            return h.vf
        seen.add(h.vf)
    return None
