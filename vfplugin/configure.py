"""Configuring a held VF for its domain, and undoing it: VF settings through the PF, representor in OVS.

One place for what the hook does at ``prepare begin``/``release end`` and ``vfctl attach/detach --live`` on
hot-plug. ``configure`` is all or nothing for one VF (what it set is put back before it raises); the previous
settings go into the lease so ``unconfigure`` can restore them in another process, after a crash, or a reboot
of libvirtd. ``unconfigure`` is best effort and idempotent: it returns its problems instead of raising.
"""

from __future__ import annotations

from .errors import HostError, VfpluginError
from .log import LOG

TYPE_CHECKING = False  # typing.TYPE_CHECKING would import typing: the hook avoids it (bench_hook)
if TYPE_CHECKING:
    from typing import Any

    from .config import Config
    from .leases import Lease
    from .ledger import Ledger
    from .ovs import WantedPort
    from .plan import Holding
    from .sysfs import Sysfs


def offload_port(config: Config, sysfs: Sysfs, pf: str | None, vf: str) -> tuple[str, str] | None:
    """(bridge, representor) when the VF's PF is an OVS offload PF; HostError when either cannot be found.
    ``pf`` None: look it up in sysfs (only when there are offload PFs at all)."""
    if not config.ovs_offload_nics:
        return None
    from .addresses import PciAddress

    info = sysfs.vf(PciAddress.parse(vf))
    pf = pf or (info.pf if info is not None else None)
    if pf is None or pf not in config.ovs_offload_nics:
        return None
    bridge = config.bridge_for(pf)
    if bridge is None:
        raise HostError(
            problem=f"PF {pf} is in ovs_offload_nics but no networks: entry names its bridge "
            f"(add e.g. {pf}/br1/bcast0)"
        )
    if info is None or not info.representor:
        raise HostError(
            problem=f"VF {vf} of switchdev PF {pf} has no representor netdev; check that "
            f"'devlink dev eswitch show pci/<PF>' says mode switchdev"
        )
    return bridge, info.representor


def wanted_port(config: Config, sysfs: Sysfs, uuid: str, name: str, h: Holding) -> WantedPort | None:
    """The OVS port the VF's representor belongs in while domain ``name`` (``uuid``) runs; None when its PF is
    not an offload PF. The hook plugs it at start, reconcile re-plugs it: one description for both."""
    where = offload_port(config, sysfs, h.pf, h.vf)
    if where is None:
        return None
    from .ovs import WantedPort

    return WantedPort(bridge=where[0], representor=where[1], domain_uuid=uuid, iface_id=h.iface_id(name),
                      mac=h.mac or "", vlan=h.vlan)


def plug(config: Config, sysfs: Sysfs, uuid: str, name: str, h: Holding) -> tuple[str, str] | None:
    """Plug the VF's representor when its PF is an offload PF; (bridge, representor), or None."""
    port = wanted_port(config, sysfs, uuid, name, h)
    if port is None:
        return None
    from . import ovs

    ovs.plug(port.bridge, port.representor, domain_uuid=port.domain_uuid, iface_id=port.iface_id, mac=port.mac,
             vlan=port.vlan)
    return port.bridge, port.representor


def unplug(lease: Lease) -> None:
    """Take the lease's representor out of OVS: the one recorded when vfplugin plugged it, whatever the
    configuration says now (a PF taken out of ovs_offload_nics while its VM ran). A lease that records none was
    never plugged: no OVS call at all. Only a port vfplugin made for this domain is deleted (ovs.unplug)."""
    if lease.saved is not None and lease.saved.representor is not None:
        from . import ovs

        ovs.unplug(lease.saved.representor, owner=lease.domain_uuid)


def configure(
    config: Config, sysfs: Sysfs, ledger: Ledger, uuid: str, name: str, h: Holding, via: str = "pyroute2"
) -> None:
    """Apply the VF settings libvirt does not and plug the representor; undo both if either fails.
    ``via``: how to reach rtnetlink (netlink.py: "pyroute2" for vfctl, "iproute2" for the hooks)."""
    from .leases import Saved, settings_pairs

    settings = h.settings()
    previous: dict[str, Any] = {}
    saved: Saved | None = None  # what the lease keeps, once read
    if settings:
        from . import netlink  # only here: a VF without settings needs no netlink at all

        previous = netlink.apply(h.pf, h.vf_index, settings, via=via)
        held = ledger.lease(h.vf)
        saved = held.saved if held is not None else None
        # A lease that already saved settings (a second prepare after a crash) keeps the originals it saved:
        # what apply found this time is vfplugin's own earlier work.
        if saved is None or not saved.settings:
            saved = Saved(h.pf, h.vf_index, settings_pairs(previous))
            ledger.save_settings(uuid, h.vf, saved)
    port = None
    try:
        port = plug(config, sysfs, uuid, name, h)
        if port is not None:  # recorded, so that unplug finds it whatever the configuration says later
            if saved is None:  # no settings: only what an earlier prepare recorded, if anything
                held = ledger.lease(h.vf)
                saved = held.saved if held is not None else None
            saved = saved or Saved(h.pf, h.vf_index)
            if saved.representor != port[1]:
                ledger.save_settings(uuid, h.vf, saved.with_port(*port))
    except VfpluginError:
        from . import netlink

        if port is not None:  # plugged, but not recorded: the lease cannot unplug it later
            from . import ovs

            try:
                ovs.unplug(port[1], owner=uuid)
            except VfpluginError as e:
                LOG.warning("rollback of %s: %s", h.vf, e)

        for problem in netlink.restore(h.pf, h.vf_index, previous, via=via):
            LOG.warning("rollback of %s: %s", h.vf, problem)
        raise


def unconfigure(config: Config, sysfs: Sysfs, lease: Lease, pf: str | None, via: str = "pyroute2") -> list[str]:
    """Unplug the representor, put back the settings saved in ``lease``; returns problems, a line each."""
    problems = []
    saved = lease.saved
    try:
        unplug(lease)
    except VfpluginError as e:
        problems.append(f"unplug {lease.vf}: {e}")
    if saved is not None and saved.settings and saved.pf is not None and saved.vf_index is not None:
        from . import netlink

        problems += netlink.restore(saved.pf, saved.vf_index, dict(saved.settings), via=via)
    return problems
