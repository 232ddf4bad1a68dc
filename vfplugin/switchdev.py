"""Is this host ready for OVS hardware offload? The facts (eswitch mode, TC offload, hw-offload, bridges,
representors) and the ``vfctl doctor`` lines drawn from them.

``gather`` asks the host (devlink, ethtool and ovs-vsctl, each through vfplugin.run with a timeout);
``evaluate`` and the ``parse_*`` functions are pure, so every verdict is testable without a ConnectX NIC.
A missing tool or device is a fact ("unknown"), never an exception. This module only reads: it must never
change the eswitch mode, NIC features or OVS settings itself; it prints the command that does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from . import ovs
from .addresses import PciAddress
from .checks import FAIL, OK, WARN, Check
from .config import Config
from .errors import VfpluginError
from .inventory import VfInfo
from .run import run

RESTART_OVS = "systemctl restart openvswitch-switch"  # the Debian unit; RPM hosts call it openvswitch


# --- pure parsing -------------------------------------------------------------------------------------------


def parse_eswitch(text: str, pf_address: PciAddress) -> str | None:
    """The mode in ``devlink -j dev eswitch show pci/<addr>``'s ``{"dev":{"pci/<addr>":{"mode":...}}}``."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    entry = doc.get("dev", {}).get(f"pci/{pf_address}") if isinstance(doc, dict) else None
    mode = entry.get("mode") if isinstance(entry, dict) else None
    return mode if isinstance(mode, str) else None


def parse_features(text: str) -> dict[str, bool]:
    """``ethtool -k`` output -> {feature: on}; ``hw-tc-offload: off [fixed]`` gives False."""
    features = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition(":")
        words = value.split()
        if sep and words and words[0] in ("on", "off"):
            features[name] = words[0] == "on"
    return features


# --- host queries (through run(); None when unknown) --------------------------------------------------------


def eswitch_mode(pf_address: PciAddress, timeout: float = 5.0) -> str | None:
    """"switchdev" or "legacy" (devlink), or None when devlink or the device does not answer."""
    try:
        result = run(["devlink", "-j", "dev", "eswitch", "show", f"pci/{pf_address}"], timeout=timeout)
    except VfpluginError:
        return None
    return parse_eswitch(result.stdout, pf_address)


def hw_tc_offload(pf: str, timeout: float = 5.0) -> bool | None:
    """Whether the PF netdev has ``hw-tc-offload`` on (ethtool -k), or None when ethtool cannot tell."""
    try:
        result = run(["ethtool", "-k", pf], timeout=timeout)
    except VfpluginError:
        return None
    return parse_features(result.stdout).get("hw-tc-offload")


# --- facts and verdicts -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OffloadFacts:
    hw_offload: str | None = None  # other_config:hw-offload as stored; None when unset
    ovsdb_error: str | None = None  # why ovsdb could not be read (then hw_offload and bridges are unknown)
    pf_addresses: Mapping[str, PciAddress] = field(default_factory=dict)  # offload PF -> PCI address
    eswitch: Mapping[str, str | None] = field(default_factory=dict)  # offload PF -> mode (None: unknown)
    tc_offload: Mapping[str, bool | None] = field(default_factory=dict)  # offload PF -> hw-tc-offload
    bridges: Mapping[str, bool] = field(default_factory=dict)  # bridge -> exists


def _pf_addresses(config: Config, vfs: Sequence[VfInfo]) -> dict[str, PciAddress]:
    addresses = {vf.pf: vf.pf_address for vf in vfs if vf.pf in config.ovs_offload_nics}
    missing = [pf for pf in config.ovs_offload_nics if pf not in addresses]
    if missing:
        try:  # a PF with no VF yet: ask sysfs for its address; failing that, the check says so
            from .sysfs import Sysfs

            sysfs = Sysfs(config.sysfs_root)
            for pf in missing:
                try:
                    addresses[pf] = sysfs.pf(pf).address
                except VfpluginError:
                    pass
        except ImportError:
            pass
    return addresses


def gather(config: Config, vfs: Sequence[VfInfo], timeout: float = 5.0) -> OffloadFacts:
    """Ask the host everything ``evaluate`` needs about the PFs in ``ovs_offload_nics``."""
    hw_offload: str | None = None
    ovsdb_error: str | None = None
    bridges: dict[str, bool] = {}
    try:
        hw_offload = ovs.other_config("hw-offload", timeout=timeout)
        for pf in config.ovs_offload_nics:
            bridge = config.bridge_for(pf)
            if bridge is not None and bridge not in bridges:
                bridges[bridge] = ovs.bridge_exists(bridge, timeout=timeout)
    except VfpluginError as e:
        ovsdb_error = str(e)
    addresses = _pf_addresses(config, vfs)
    return OffloadFacts(
        hw_offload=hw_offload,
        ovsdb_error=ovsdb_error,
        pf_addresses=addresses,
        eswitch={pf: eswitch_mode(address, timeout) for pf, address in addresses.items()},
        tc_offload={pf: hw_tc_offload(pf, timeout) for pf in config.ovs_offload_nics},
        bridges=bridges,
    )


START_OVS = "systemctl start openvswitch-switch"


def _hw_offload_check(facts: OffloadFacts) -> Check:
    name = "Open vSwitch hardware offload (other_config:hw-offload)"
    if facts.ovsdb_error:
        return Check(name, FAIL, facts.ovsdb_error, START_OVS)
    if facts.hw_offload == "true":
        return Check(name, OK, "true")
    found = "not set" if facts.hw_offload is None else facts.hw_offload
    return Check(name, FAIL, f"{found}; flows stay in the software datapath",
                 f"ovs-vsctl set Open_vSwitch . other_config:hw-offload=true && {RESTART_OVS}")


def _eswitch_check(pf: str, facts: OffloadFacts) -> Check:
    name = f"eswitch mode of {pf}"
    address = facts.pf_addresses.get(pf)
    if address is None:
        return Check(name, FAIL, "PCI address unknown (no such PF, or no VFs discovered)",
                     f"check that {pf} exists, then 'vfctl pf set-vfs {pf} N'")
    mode = facts.eswitch.get(pf)
    fix = f"devlink dev eswitch set pci/{address} mode switchdev"
    if mode == "switchdev":
        return Check(name, OK, f"pci/{address} switchdev")
    if mode is None:
        return Check(name, FAIL, f"devlink shows no eswitch for pci/{address} (no devlink, or a driver "
                     "without switchdev)", f"install iproute2, then {fix}")
    return Check(name, FAIL, f"pci/{address} is in {mode} mode", fix)


def _tc_offload_check(pf: str, facts: OffloadFacts) -> Check:
    name = f"TC offload on {pf} (hw-tc-offload)"
    tc = facts.tc_offload.get(pf)
    if tc:
        return Check(name, OK, "on")
    found = "off" if tc is False else "unknown (ethtool -k shows no hw-tc-offload)"
    return Check(name, FAIL, found, f"ethtool -K {pf} hw-tc-offload on")


def _representor_check(pf: str, vfs: Sequence[VfInfo], facts: OffloadFacts) -> Check:
    name = f"representors of {pf}'s VFs"
    own = [vf for vf in vfs if vf.pf == pf]
    if not own:
        return Check(name, WARN, "no VFs discovered", f"vfctl pf set-vfs {pf} N")
    missing = [str(vf.address) for vf in own if not vf.representor]
    if not missing:
        return Check(name, OK, ", ".join(str(vf.representor) for vf in own))
    address = facts.pf_addresses.get(pf)
    fix = f"devlink dev eswitch set pci/{address} mode switchdev" if address else "put the PF in switchdev"
    return Check(name, FAIL, f"{len(missing)} of {len(own)} VFs have none: {', '.join(missing)}", fix)


def _bridge_check(pf: str, config: Config, facts: OffloadFacts) -> Check:
    name = f"OVS bridge for {pf}"
    bridge = config.bridge_for(pf)
    if bridge is None:
        return Check(name, FAIL, "networks: names no bridge for this PF",
                     f"add '{pf}/<bridge>/bcast0' to networks: in the configuration")
    if facts.ovsdb_error:
        return Check(name, FAIL, f"{bridge}: cannot ask ovsdb", START_OVS)
    if facts.bridges.get(bridge):
        return Check(name, OK, bridge)
    return Check(name, FAIL, f"bridge {bridge} does not exist", f"ovs-vsctl add-br {bridge}")


# As the reference platform documents: these NICs hardly offload connection tracking.
CONNTRACK_WARNING = Check(
    "conntrack on offloaded ports", WARN,
    "conntrack-based filtering (security groups) on representor ports is not offloaded; "
    "those flows fall back to the software datapath",
    "keep stateful filtering off offloaded ports where line rate matters",
)


def evaluate(config: Config, vfs: Sequence[VfInfo], facts: OffloadFacts) -> list[Check]:
    """The doctor lines for OVS offload, in the order an administrator fixes them (none without offload)."""
    if not config.ovs_offload_nics:
        return []
    checks = [_hw_offload_check(facts)]
    for pf in config.ovs_offload_nics:
        checks += [
            _eswitch_check(pf, facts),
            _tc_offload_check(pf, facts),
            _representor_check(pf, vfs, facts),
            _bridge_check(pf, config, facts),
        ]
    checks.append(CONNTRACK_WARNING)
    return checks


def offload_checks(config: Config, vfs: Sequence[VfInfo]) -> list[Check]:
    """``vfctl doctor``'s OVS offload lines for the PFs in ``ovs_offload_nics`` (none when there are none)."""
    if not config.ovs_offload_nics:
        return []
    return evaluate(config, vfs, gather(config, vfs))
