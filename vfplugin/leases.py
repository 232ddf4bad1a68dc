"""What the ledger holds for a VF, as values, and how a lease changes hands, as a table.

Pure: no SQLite, no host. ledger.py stores these records and applies ``TAKE`` inside its transactions;
allocator.py, startable.py and the commands read them.

A lease is held by one domain (its UUID) and is ``reserved`` (vfctl chose the VF, the domain has not started)
or ``active`` (the qemu hook claimed it at ``prepare begin``, or the network hook at ``port-created``). It is
*stale* when it comes from an earlier boot, or is a reservation older than the TTL: then another domain may
take it over. What a claim or a reservation does to the VF's current lease depends only on who holds it and
how; ``TAKE`` says it in one place, and test_ledger_properties checks the ledger against it.
"""

from __future__ import annotations

from .record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING would import typing: the hook avoids it (bench_hook)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

# The VF settings vfplugin may change through the PF and saves, before changing them, for release to put
# back (netlink.ORDER's names, and qos apart from vlan), with the type each is stored as, in the order the
# ledger keeps them.
SETTING_TYPES: dict[str, type] = {
    "mac": str, "vlan": int, "qos": int, "spoofchk": bool, "trust": bool, "link_state": str,
    "min_tx_rate": int, "max_tx_rate": int,
}


def typed(key: str, value: Any) -> Any:
    """A setting read back from SQLite in its own type (SQLite stores a bool as 0 or 1)."""
    return SETTING_TYPES[key](value)


def settings_pairs(values: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """``values`` as ``Saved.settings``: in SETTING_TYPES' order, the order the ledger reads them back in."""
    return tuple((key, values[key]) for key in SETTING_TYPES if key in values)


class Want(Record):
    """One VF a domain asks the ledger for."""

    vf: str
    nic_id: str | None  # None: an adopted hand-written hostdev
    mac: str | None = None
    vlan: int | None = None
    network: str | None = None  # taken through this libvirt network's port (the network hook)
    port: str | None = None  # that port's UUID


class Saved(Record):
    """What release needs to undo vfplugin's configuration of one VF, whichever process does it and whatever
    the configuration says by then: the settings the VF had before vfplugin changed them (``settings``, pairs
    in SETTING_TYPES' names and order, as ``settings_pairs`` makes them: empty when it changed none) on VF
    ``vf_index`` of ``pf``, and the OVS port it plugged (``bridge``, ``representor``: None when it plugged
    none)."""

    pf: str | None = None
    vf_index: int | None = None
    settings: tuple[tuple[str, Any], ...] = ()
    bridge: str | None = None
    representor: str | None = None

    def with_port(self, bridge: str, representor: str) -> Saved:
        return Saved(self.pf, self.vf_index, self.settings, bridge, representor)


class Lease(Record):
    """One row of the leases table: a VF held (reserved or active) by a domain."""

    vf: str
    domain_uuid: str
    domain_name: str
    nic_id: str | None
    mac: str | None
    vlan: int | None
    state: str  # "reserved" | "active"
    boot_id: str
    reserved_at: float | None
    activated_at: float | None
    started_at: float | None
    saved: Saved | None  # what vfplugin changed on the VF, to undo at release; None: nothing
    stale: bool  # another boot_id, or a reservation past its TTL: claim/reserve/expire may take it
    network: str | None = None  # held through this libvirt network's port (the network hook)
    port: str | None = None  # that port's UUID


class NetNic(Record):
    """What one network nic of a domain (``<vfp:nic network=...>``) asks for, keyed by its MAC (lower case:
    the network hook looks it up by the port's MAC, which libvirt writes in lower case)."""

    mac: str
    nic_id: str
    network: str
    settings: Mapping[str, Any]  # request.VF_SETTINGS names -> values (trust, spoofchk, link_state, rates)


_NOTHING: Mapping[str, Any] = {}


class Snapshot(Record):
    """What an allocation needs, read inside the transaction that will reserve the result."""

    leases: tuple[Lease, ...]
    sticky: Mapping[str, str] = _NOTHING  # nic id -> the VF it had last
    last_released: Mapping[str, float] = _NOTHING  # VF -> when it was last released


# --- who may take a VF ---------------------------------------------------------------------------------------
# The VF's current lease, seen from the domain that asks for it:
FREE = "free"  # no lease
OTHER_LIVE = "other, live"  # another domain's, current
OTHER_STALE = "other, stale"  # another domain's, from an earlier boot or an expired reservation
OWN_ACTIVE = "own, active"  # this domain's, active and current
OWN_RESERVED = "own, reserved or stale"  # this domain's, a reservation, or an active lease gone stale

# What each operation does then:
INSERT = "insert"  # a new lease: active for claim, reserved for reserve
REFUSE = "refuse"  # VfBusy, nothing changes
TAKE_OVER = "take over"  # journal a takeover, delete the stale lease, then as FREE
ACTIVATE = "activate"  # the lease becomes active (activated_at: now)
KEEP_ACTIVE = "keep active"  # a reservation of a VF this domain runs with: it stays active, unchanged
RENEW = "renew"  # the reservation starts again (reserved_at: now)

TAKE: dict[tuple[str, str], str] = {
    ("claim", FREE): INSERT,
    ("claim", OTHER_LIVE): REFUSE,
    ("claim", OTHER_STALE): TAKE_OVER,
    ("claim", OWN_ACTIVE): ACTIVATE,
    ("claim", OWN_RESERVED): ACTIVATE,
    ("reserve", FREE): INSERT,
    ("reserve", OTHER_LIVE): REFUSE,
    ("reserve", OTHER_STALE): TAKE_OVER,
    ("reserve", OWN_ACTIVE): KEEP_ACTIVE,
    ("reserve", OWN_RESERVED): RENEW,
}


def holder(lease: Lease | None, domain_uuid: str) -> str:
    """Who holds the VF, as ``TAKE``'s rows name it, for the domain ``domain_uuid`` that asks for it."""
    if lease is None:
        return FREE
    if lease.domain_uuid != domain_uuid:
        return OTHER_STALE if lease.stale else OTHER_LIVE
    return OWN_ACTIVE if lease.state == "active" and not lease.stale else OWN_RESERVED
