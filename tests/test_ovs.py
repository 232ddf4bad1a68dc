"""vfplugin.ovs against a real Open vSwitch: ports, tags and external_ids as ovsdb stores them, idempotence,
reconcile of stale ports, and the one-line refusals when the bridge is missing or ovsdb is down.

Each test gets its own ovsdb-server and ovs-vswitchd (tests/ovs_harness.py), with veth pairs named as the
ConnectX-5 representors of the example fixture host standing in for representors.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, require, require_root, require_tool
from tests.ovs_harness import SCHEMA, TOOLS, OvsSandbox, inside_netns, ovs_sandbox
from vfplugin import ovs, switchdev
from vfplugin.addresses import PciAddress
from vfplugin.checks import FAIL, OK
from vfplugin.config import parse
from vfplugin.errors import HostError, OvsError, VfpluginError
from vfplugin.inventory import VfInfo

pytestmark = pytest.mark.ovs


def fixture_representors(host: str = "example", count: int = 3) -> tuple[str, ...]:
    """The names the fixture host gives its representors (phys_port_name pf<N>vf<M>), so that the names
    this tier plugs are the ones discovery reports; the ConnectX-5 defaults if the fixture is absent."""
    net = FIXTURES / "hosts" / host / "sys" / "class" / "net"
    names = sorted(
        p.name for p in net.glob("*")
        if (p / "phys_port_name").exists() and "vf" in (p / "phys_port_name").read_text()
    ) if net.is_dir() else []
    return tuple(names[:count]) if len(names) >= count else tuple(f"pf0vf{i}" for i in range(count))


REP0, REP1, REP2 = fixture_representors()
VM_A, VM_B, VM_C = (str(uuid.UUID(int=n)) for n in (0xA, 0xB, 0xC))
MAC_A, MAC_B, MAC_C = "52:54:00:00:00:0a", "52:54:00:00:00:0b", "52:54:00:00:00:0c"


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[OvsSandbox]:
    require_root()
    require_tool(*TOOLS)
    require(SCHEMA.exists(), f"{SCHEMA} is missing (openvswitch-common)")
    with ovs_sandbox((REP0, REP1, REP2)) as box:
        box.add_bridge("br1")
        monkeypatch.setenv(ovs.ENV_VAR, box.db)
        with inside_netns(box.netns):
            yield box


def plug_a(box: OvsSandbox, vlan: int | None = 100, bridge: str = "br1", timeout: float = 5.0) -> None:
    ovs.plug(bridge, REP0, domain_uuid=VM_A, iface_id="vm-a-net0", mac=MAC_A, vlan=vlan, timeout=timeout)


def assert_one_line(error: VfpluginError) -> str:
    text = str(error)
    assert "\n" not in text and text.strip() == text
    return text


# --- plug and unplug ----------------------------------------------------------------------------------------


def test_plug_adds_the_representor_with_owner_ids_vlan_tag_and_link_up(sandbox: OvsSandbox) -> None:
    plug_a(sandbox)

    assert sandbox.ports("br1") == [REP0]
    assert sandbox.external_ids(REP0) == {
        "vm-uuid": VM_A, "iface-id": "vm-a-net0", "attached-mac": MAC_A, "vfplugin": "1",
    }
    assert sandbox.get("Port", REP0, "tag") == "100"
    assert sandbox.link_is_up(REP0)
    assert sandbox.get("Interface", REP0, "ofport") not in (None, "-1")  # vswitchd opened the netdev
    assert ovs.plugged() == [
        ovs.OvsPort(name=REP0, bridge="br1", vm_uuid=VM_A, iface_id="vm-a-net0", mac=MAC_A, tag=100)
    ]


def test_plug_twice_keeps_the_same_port_and_unplug_twice_is_quiet(sandbox: OvsSandbox) -> None:
    plug_a(sandbox)
    first = sandbox.get("Interface", REP0, "_uuid"), sandbox.get("Interface", REP0, "ofport")
    plug_a(sandbox)
    # Same row, same OpenFlow port: a re-plug (reconnect, reconcile) must not flap the VM's link.
    assert (sandbox.get("Interface", REP0, "_uuid"), sandbox.get("Interface", REP0, "ofport")) == first
    assert sandbox.ports("br1") == [REP0]

    ovs.unplug(REP0)
    ovs.unplug(REP0)
    assert sandbox.ports("br1") == []
    assert sandbox.get("Interface", REP0, "_uuid") is None
    assert ovs.plugged() == []


def test_plug_without_vlan_or_mac_clears_what_a_previous_owner_left(sandbox: OvsSandbox) -> None:
    plug_a(sandbox, vlan=100)
    ovs.plug("br1", REP0, domain_uuid=VM_B, iface_id="vm-b-net0", mac=None, vlan=None)

    assert sandbox.get("Port", REP0, "tag") is None
    assert sandbox.external_ids(REP0) == {
        "vm-uuid": VM_B, "iface-id": "vm-b-net0", "attached-mac": None, "vfplugin": "1",
    }


def test_plug_moves_a_representor_found_on_another_bridge(sandbox: OvsSandbox) -> None:
    sandbox.add_bridge("br2")
    plug_a(sandbox, bridge="br2")
    plug_a(sandbox, bridge="br1")

    assert sandbox.bridge_of(REP0) == "br1"
    assert sandbox.ports("br2") == []
    assert sandbox.external_ids(REP0)["vfplugin"] == "1"


def test_plugged_lists_only_ports_vfplugin_plugged(sandbox: OvsSandbox) -> None:
    sandbox.vsctl("add-port", "br1", REP2, "--", "set", "Port", REP2, "tag=7")  # an admin's own port
    ovs.plug("br1", REP1, domain_uuid=VM_B, iface_id="dom:with,odd=chars", mac=MAC_B, vlan=None)

    assert ovs.plugged() == [
        ovs.OvsPort(name=REP1, bridge="br1", vm_uuid=VM_B, iface_id="dom:with,odd=chars", mac=MAC_B, tag=None)
    ]
    ovs.unplug(REP1)
    assert sandbox.ports("br1") == [REP2]  # unplugging ours left the admin's port alone


def test_plug_refuses_a_missing_representor_before_touching_ovsdb(sandbox: OvsSandbox) -> None:
    with pytest.raises(HostError) as info:
        ovs.plug("br1", "pf0vf9", domain_uuid=VM_A, iface_id="x", mac=MAC_A, vlan=None)
    assert "representor pf0vf9 does not exist" in assert_one_line(info.value)
    assert sandbox.ports("br1") == []


# --- reconcile ----------------------------------------------------------------------------------------------


def test_reconcile_unplugs_a_stale_port_and_replugs_a_missing_one(sandbox: OvsSandbox) -> None:
    plug_a(sandbox)  # VM A has stopped without its stopped-end hook: its port is stale
    ovs.plug("br1", REP1, domain_uuid=VM_B, iface_id="vm-b-net0", mac=MAC_B, vlan=200)
    wanted = [
        ovs.WantedPort("br1", REP1, VM_B, "vm-b-net0", MAC_B, 200),  # running, plugged: leave it
        ovs.WantedPort("br1", REP2, VM_C, "vm-c-net0", MAC_C, None),  # running, port lost: re-plug
    ]
    b_row = sandbox.get("Interface", REP1, "_uuid")

    to_unplug, to_plug = ovs.reconcile_plan(ovs.plugged(), wanted)
    assert [p.name for p in to_unplug] == [REP0]
    assert [w.representor for w in to_plug] == [REP2]
    for port in to_unplug:
        ovs.unplug(port.name)
    for w in to_plug:
        ovs.plug(w.bridge, w.representor, domain_uuid=w.domain_uuid, iface_id=w.iface_id, mac=w.mac,
                 vlan=w.vlan)

    assert sandbox.ports("br1") == sorted([REP1, REP2])
    assert sandbox.get("Interface", REP1, "_uuid") == b_row
    assert sandbox.external_ids(REP2)["vm-uuid"] == VM_C
    assert ovs.reconcile_plan(ovs.plugged(), wanted) == ([], [])


# --- refusals -----------------------------------------------------------------------------------------------


def test_plug_refuses_a_missing_bridge_with_the_command_that_creates_it(sandbox: OvsSandbox) -> None:
    start = time.monotonic()
    with pytest.raises(OvsError) as info:
        plug_a(sandbox, bridge="br9", timeout=2)
    text = assert_one_line(info.value)
    assert "bridge br9 does not exist" in text and "ovs-vsctl add-br br9" in text and "networks:" in text
    assert time.monotonic() - start < 3
    assert sandbox.bridge_of(REP0) is None  # nothing half-done
    assert ovs.bridge_exists("br1") and not ovs.bridge_exists("br9")


def test_every_call_refuses_in_one_line_when_ovsdb_is_unreachable(
    sandbox: OvsSandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ovs.ENV_VAR, f"unix:{tmp_path}/no-such.sock")
    calls = [
        lambda: plug_a(sandbox, timeout=2),
        lambda: ovs.unplug(REP0, timeout=2),
        lambda: ovs.plugged(timeout=2),
        lambda: ovs.bridge_exists("br1", timeout=2),
    ]
    for call in calls:
        start = time.monotonic()
        with pytest.raises(OvsError) as info:
            call()
        text = assert_one_line(info.value)
        assert f"cannot reach ovsdb at unix:{tmp_path}/no-such.sock" in text
        assert "openvswitch-switch" in text
        assert time.monotonic() - start < 3


def test_plug_refuses_when_the_ovsdb_server_has_stopped(sandbox: OvsSandbox) -> None:
    sandbox.stop_ovsdb()
    with pytest.raises(OvsError) as info:
        plug_a(sandbox, timeout=2)
    assert "cannot reach ovsdb" in assert_one_line(info.value)


def test_plug_gives_up_within_its_timeout_when_vswitchd_is_down(sandbox: OvsSandbox) -> None:
    sandbox.stop_vswitchd()
    start = time.monotonic()
    with pytest.raises(OvsError) as info:
        plug_a(sandbox, timeout=1)
    text = assert_one_line(info.value)
    assert "no answer from ovsdb/ovs-vswitchd within 1s" in text
    assert time.monotonic() - start < 4


# --- doctor's OVS lines against the real ovsdb --------------------------------------------------------------


def test_offload_checks_read_hw_offload_and_the_bridge_from_ovsdb(sandbox: OvsSandbox) -> None:
    sandbox.add_representor("eth3")  # plays the PF netdev; a veth has "hw-tc-offload: off [fixed]"
    config = parse({"ovs_offload_nics": ["eth3"], "networks": ["eth3/br1/bcast0"]})
    vfs = [
        VfInfo(address=PciAddress.parse("0000:3b:00.2"), pf="eth3",
               pf_address=PciAddress.parse("0000:3b:00.0"), vf_index=0, vendor_id="15b3", device_id="1018",
               model="ConnectX-5 Virtual Function", numa_node=0, iommu_group=40, driver="mlx5_core",
               netdev=None, representor=REP0)
    ]

    before = {c.name: c for c in switchdev.offload_checks(config, vfs)}
    assert before["Open vSwitch hardware offload (other_config:hw-offload)"].status == FAIL
    assert before["OVS bridge for eth3"].status == OK
    assert before["TC offload on eth3 (hw-tc-offload)"].detail == "off"
    assert before["eswitch mode of eth3"].status == FAIL  # no such devlink device here

    sandbox.vsctl("set", "Open_vSwitch", ".", "other_config:hw-offload=true")
    sandbox.vsctl("del-br", "br1")
    after = {c.name: c for c in switchdev.offload_checks(config, vfs)}
    assert ovs.other_config("hw-offload") == "true"
    assert after["Open vSwitch hardware offload (other_config:hw-offload)"].status == OK
    assert after["OVS bridge for eth3"].fix == "ovs-vsctl add-br br1"
