"""vfctl doctor's OVS offload verdicts, from facts alone (no ConnectX NIC, no OVS): what each finding reports
and the command it prints to fix it."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from vfplugin import switchdev
from vfplugin.addresses import PciAddress
from vfplugin.checks import FAIL, OK, WARN, Check
from vfplugin.config import Config, parse
from vfplugin.inventory import VfInfo

pytestmark = pytest.mark.pure

PF_ADDR = PciAddress.parse("0000:3b:00.0")
CONFIG = parse({"ovs_offload_nics": ["eth3"], "networks": ["eth1/br0/192.168.100.111", "eth3/br1/bcast0"]})
GOOD = switchdev.OffloadFacts(
    hw_offload="true",
    pf_addresses={"eth3": PF_ADDR},
    eswitch={"eth3": "switchdev"},
    tc_offload={"eth3": True},
    bridges={"br1": True},
)


def vf(index: int, representor: str | None) -> VfInfo:
    return VfInfo(
        address=PciAddress(0, 0x3B, 0, 2 + index), pf="eth3", pf_address=PF_ADDR, vf_index=index,
        vendor_id="15b3", device_id="1018", model="ConnectX-5 Virtual Function", numa_node=0,
        iommu_group=40 + index, driver="mlx5_core", netdev=None, representor=representor,
    )


VFS = [vf(0, "pf0vf0"), vf(1, "pf0vf1")]


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def verdicts(vfs: list[VfInfo] = VFS, config: Config = CONFIG, **changes: Any) -> dict[str, Check]:
    """The doctor lines, by name, for the GOOD facts with ``changes`` applied."""
    return by_name(switchdev.evaluate(config, vfs, dataclasses.replace(GOOD, **changes)))


def test_a_ready_host_passes_every_check_and_still_warns_about_conntrack() -> None:
    checks = switchdev.evaluate(CONFIG, VFS, GOOD)

    assert [c.status for c in checks if c.name != "conntrack on offloaded ports"] == [OK] * 5
    warning = by_name(checks)["conntrack on offloaded ports"]
    assert warning.status == WARN and "not offloaded" in warning.detail and "software" in warning.detail
    assert all("\n" not in c.line() for c in checks)


def test_no_offload_pf_means_no_offload_lines() -> None:
    assert switchdev.evaluate(parse({"sriov_nics": ["eth2"]}), [], GOOD) == []
    assert switchdev.offload_checks(parse({"sriov_nics": ["eth2"]}), []) == []


def test_hw_offload_unset_fails_with_the_setting_and_the_restart() -> None:
    check = switchdev.evaluate(CONFIG, VFS, dataclasses.replace(GOOD, hw_offload=None))[0]
    assert check.status == FAIL and "not set" in check.detail
    assert check.fix == (
        "ovs-vsctl set Open_vSwitch . other_config:hw-offload=true && systemctl restart openvswitch-switch"
    )
    assert switchdev.evaluate(CONFIG, VFS, dataclasses.replace(GOOD, hw_offload="false"))[0].status == FAIL


def test_legacy_eswitch_fails_with_the_devlink_command_for_that_pf() -> None:
    check = verdicts(eswitch={"eth3": "legacy"})["eswitch mode of eth3"]
    assert check.status == FAIL and "legacy" in check.detail
    assert check.fix == "devlink dev eswitch set pci/0000:3b:00.0 mode switchdev"


def test_unknown_eswitch_and_unknown_pf_address_fail_rather_than_pass() -> None:
    assert verdicts(eswitch={})["eswitch mode of eth3"].status == FAIL
    no_address = verdicts([], pf_addresses={}, eswitch={})
    assert no_address["eswitch mode of eth3"].status == FAIL
    assert "vfctl pf set-vfs eth3" in no_address["eswitch mode of eth3"].fix
    assert no_address["representors of eth3's VFs"].status == WARN


def test_tc_offload_off_fails_with_the_ethtool_command() -> None:
    for found in (False, None):
        check = verdicts(tc_offload={"eth3": found})["TC offload on eth3 (hw-tc-offload)"]
        assert check.status == FAIL and check.fix == "ethtool -K eth3 hw-tc-offload on"


def test_a_vf_without_representor_is_named() -> None:
    check = verdicts([vf(0, "pf0vf0"), vf(1, None)])["representors of eth3's VFs"]
    assert check.status == FAIL and "1 of 2" in check.detail and "0000:3b:00.3" in check.detail


def test_missing_bridge_fails_with_add_br_and_a_pf_without_bridge_points_at_networks() -> None:
    assert verdicts(bridges={"br1": False})["OVS bridge for eth3"].fix == "ovs-vsctl add-br br1"

    unnamed = parse({"ovs_offload_nics": ["eth3"], "networks": ["eth1/br0/192.168.100.111"]})
    check = verdicts(config=unnamed)["OVS bridge for eth3"]
    assert check.status == FAIL and "networks:" in check.fix


def test_unreachable_ovsdb_fails_the_ovs_checks_with_the_reason() -> None:
    checks = verdicts(hw_offload=None, bridges={}, ovsdb_error="Open vSwitch: cannot reach ovsdb")
    first = checks["Open vSwitch hardware offload (other_config:hw-offload)"]
    assert first.status == FAIL and "cannot reach ovsdb" in first.detail
    assert checks["OVS bridge for eth3"].status == FAIL


def test_parse_eswitch_reads_devlinks_json() -> None:
    text = '{"dev":{"pci/0000:3b:00.0":{"mode":"switchdev","inline-mode":"none","encap-mode":"basic"}}}'
    assert switchdev.parse_eswitch(text, PF_ADDR) == "switchdev"
    assert switchdev.parse_eswitch(text, PciAddress.parse("0000:3b:00.1")) is None
    assert switchdev.parse_eswitch('{"dev":{}}', PF_ADDR) is None
    assert switchdev.parse_eswitch("not json", PF_ADDR) is None


def test_parse_features_reads_ethtool_k() -> None:
    text = "\n".join([
        "Features for eth3:", "rx-checksumming: on", "\ttx-checksum-ipv4: off [fixed]",
        "hw-tc-offload: off [fixed]",
    ])
    assert switchdev.parse_features(text) == {
        "rx-checksumming": True, "tx-checksum-ipv4": False, "hw-tc-offload": False,
    }
    assert switchdev.parse_features("hw-tc-offload: on\n")["hw-tc-offload"] is True
