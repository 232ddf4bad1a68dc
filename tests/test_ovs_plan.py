"""The pure half of vfplugin.ovs: the reconcile plan, the plug transaction, reading ovs-vsctl's JSON, and the
one-line messages its failures become. (The same code against a real Open vSwitch: tests/test_ovs.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from vfplugin import ovs
from vfplugin.errors import InvalidValue, OvsError

pytestmark = pytest.mark.pure

VM_A = "00000000-0000-0000-0000-00000000000a"
VM_B = "00000000-0000-0000-0000-00000000000b"
VM_C = "00000000-0000-0000-0000-00000000000c"

# Recorded from ovs-vsctl 3.1.0 (Debian 12) running plugged()'s query: pf0vf0 on br1 with tag 100, pf0vf1 on
# br2 without tag or attached-mac, pf0vf2 an admin's port (not in the Interface table's answer), and br0, a
# bridge with its internal port only: ovsdb's JSON gives a one-element set as the bare atom.
PLUGGED_OUTPUT = "\n".join([
    '{"data":[["pf0vf0",["map",[["attached-mac","52:54:00:00:00:0a"],["iface-id","vm-a-net0"],["vfplugin","1"],'
    '["vm-uuid","00000000-0000-0000-0000-00000000000a"]]]],["pf0vf1",["map",[["iface-id","vm-b-net1"],'
    '["vfplugin","1"],["vm-uuid","00000000-0000-0000-0000-00000000000b"]]]]],"headings":["name","external_ids"]}',
    '{"data":[[["uuid","9dd38f10-3357-4cf4-80be-0ee482c702db"],"pf0vf0",100],[["uuid","9d7b7d41-75ac-41e3-8a0e-'
    '8ee0b1c1e7ad"],"br2",["set",[]]],[["uuid","eb6af2fe-49de-49f8-9723-b914b1cadd53"],"pf0vf1",["set",[]]],'
    '[["uuid","29351147-2c78-4d0f-ad5f-5eaacaf9dade"],"br1",["set",[]]],[["uuid","fd7633a7-2d7e-4fc1-bd17-'
    '594a8df1c001"],"pf0vf2",["set",[]]],[["uuid","fc1f5787-96cf-4123-bb7b-a3d9b2022412"],"br0",["set",[]]]],'
    '"headings":["_uuid","name","tag"]}',
    '{"data":[["br1",["set",[["uuid","29351147-2c78-4d0f-ad5f-5eaacaf9dade"],["uuid","9dd38f10-3357-4cf4-80be-'
    '0ee482c702db"],["uuid","fd7633a7-2d7e-4fc1-bd17-594a8df1c001"]]]],["br2",["set",[["uuid","9d7b7d41-75ac-'
    '41e3-8a0e-8ee0b1c1e7ad"],["uuid","eb6af2fe-49de-49f8-9723-b914b1cadd53"]]]],["br0",["uuid","fc1f5787-96cf-'
    '4123-bb7b-a3d9b2022412"]]],"headings":["name","ports"]}',
])


def port(name: str, bridge: str = "br1", vm: str = VM_A, mac: str | None = "52:54:00:00:00:0a",
         tag: int | None = None, iface_id: str = "vm-a-net0") -> ovs.OvsPort:
    return ovs.OvsPort(name=name, bridge=bridge, vm_uuid=vm, iface_id=iface_id, mac=mac, tag=tag)


def want(name: str, bridge: str = "br1", vm: str = VM_A, mac: str | None = "52:54:00:00:00:0a",
         vlan: int | None = None, iface_id: str = "vm-a-net0") -> ovs.WantedPort:
    return ovs.WantedPort(bridge, name, vm, iface_id, mac, vlan)


# --- reconcile_plan -----------------------------------------------------------------------------------------


def test_plan_unplugs_ports_nobody_wants_and_plugs_missing_ones() -> None:
    plugged = [port("pf0vf0"), port("pf0vf1", vm=VM_B)]
    wanted = [want("pf0vf1", vm=VM_B), want("pf0vf2", vm=VM_C)]

    to_unplug, to_plug = ovs.reconcile_plan(plugged, wanted)

    assert to_unplug == [port("pf0vf0")]
    assert to_plug == [want("pf0vf2", vm=VM_C)]


def test_plan_is_empty_when_ovsdb_already_matches() -> None:
    plugged = [port("pf0vf0", tag=100), port("pf0vf1", vm=VM_B, mac=None)]
    wanted = [want("pf0vf1", vm=VM_B, mac=None), want("pf0vf0", vlan=100)]
    assert ovs.reconcile_plan(plugged, wanted) == ([], [])


@pytest.mark.parametrize(
    "plugged",
    [
        port("pf0vf0", bridge="br2"),  # config now names another bridge
        port("pf0vf0", vm=VM_B),  # the VF changed hands while the hook did not run
        port("pf0vf0", tag=7),  # a stale VLAN
        port("pf0vf0", mac="52:54:00:00:00:ff"),
        port("pf0vf0", iface_id="old-name-net0"),  # the domain was renamed
    ],
)
def test_plan_replugs_in_place_a_port_that_differs_from_what_is_wanted(plugged: ovs.OvsPort) -> None:
    assert ovs.reconcile_plan([plugged], [want("pf0vf0")]) == ([], [want("pf0vf0")])


def test_plan_compares_macs_without_regard_to_case() -> None:
    plugged = [port("pf0vf0", mac="52:54:00:AB:CD:EF")]
    assert ovs.reconcile_plan(plugged, [want("pf0vf0", mac="52:54:00:ab:cd:ef")]) == ([], [])


def test_plan_refuses_a_representor_wanted_by_two_domains() -> None:
    with pytest.raises(OvsError, match="pf0vf0 is wanted twice"):
        ovs.reconcile_plan([], [want("pf0vf0"), want("pf0vf0", vm=VM_B)])


# --- reading ovs-vsctl's JSON -------------------------------------------------------------------------------


def test_parse_plugged_joins_interfaces_ports_and_bridges() -> None:
    assert ovs.parse_plugged(PLUGGED_OUTPUT) == [
        ovs.OvsPort("pf0vf0", "br1", VM_A, "vm-a-net0", "52:54:00:00:00:0a", 100),
        ovs.OvsPort("pf0vf1", "br2", VM_B, "vm-b-net1", None, None),
    ]


def test_parse_plugged_rejects_output_it_does_not_understand() -> None:
    with pytest.raises(OvsError, match="expected 3 JSON tables, got 1"):
        ovs.parse_plugged(PLUGGED_OUTPUT.splitlines()[0])


# --- the plug transaction -----------------------------------------------------------------------------------


def test_plug_argv_tags_the_port_and_quotes_values() -> None:
    argv = ovs.plug_argv("br1", "pf0vf0", domain_uuid=VM_A, iface_id="dom:x,y=z", mac="52:54:00:00:00:0a",
                         vlan=100)
    assert argv == [
        "--", "--may-exist", "add-port", "br1", "pf0vf0",
        "--", "set", "Interface", "pf0vf0",
        f'external_ids:vm-uuid="{VM_A}"', 'external_ids:iface-id="dom:x,y=z"', "external_ids:vfplugin=1",
        'external_ids:attached-mac="52:54:00:00:00:0a"',
        "--", "set", "Port", "pf0vf0", "tag=100",
    ]


def test_plug_argv_without_vlan_or_mac_clears_stale_ones_and_move_deletes_first() -> None:
    argv = ovs.plug_argv("br1", "pf0vf0", domain_uuid=VM_A, iface_id="i", mac=None, vlan=None, move=True)
    assert argv[:7] == ["--", "--if-exists", "del-port", "pf0vf0", "--", "add-port", "br1"]
    assert argv[-11:] == [
        "--", "remove", "Interface", "pf0vf0", "external_ids", "attached-mac",
        "--", "clear", "Port", "pf0vf0", "tag",
    ]


@pytest.mark.parametrize("name", ["-x", "br 1", "a" * 16, ""])
def test_plug_rejects_names_ovs_vsctl_would_misread(name: str) -> None:
    with pytest.raises(InvalidValue):
        ovs.plug(name, "pf0vf0", domain_uuid=VM_A, iface_id="i", mac=None, vlan=None)
    with pytest.raises(InvalidValue):
        ovs.unplug(name)


def test_plug_rejects_a_bad_uuid_mac_or_vlan_before_running_anything() -> None:
    bad: list[dict[str, Any]] = [{"domain_uuid": "nope"}, {"mac": "01:00:5e:00:00:01"}, {"vlan": 4095},
                                 {"iface_id": ""}]
    for kw in bad:
        args: dict[str, Any] = dict(domain_uuid=VM_A, iface_id="i", mac=None, vlan=None)
        args.update(kw)
        with pytest.raises(InvalidValue):
            ovs.plug("br1", "pf0vf0", **args)


# --- failures as one line that says what to do --------------------------------------------------------------


def test_classify_names_the_fix_for_each_known_failure() -> None:
    argv = ["ovs-vsctl", "--timeout=5", "--", "--may-exist", "add-port", "br9", "pf0vf0"]
    cases = {
        "ovs-vsctl: no bridge named br9\n":
            "bridge br9 does not exist; create it with 'ovs-vsctl add-br br9'",
        "ovs-vsctl: unix:/run/openvswitch/db.sock: database connection failed (No such file or directory)\n":
            "cannot reach ovsdb at unix:/run/openvswitch/db.sock (No such file or directory); is openvswitch",
        "2026-01-01T00:00:00Z|00002|fatal_signal|WARN|terminating with signal 14 (Alarm clock)\n":
            "no answer from ovsdb/ovs-vswitchd within 5s",
    }
    for stderr, expected in cases.items():
        text = str(ovs.classify(argv, 1, stderr, 5))
        assert text.startswith("Open vSwitch: ") and expected in text and "\n" not in text
    assert "no answer" in str(ovs.classify(argv, -14, "", 5))
    assert "install openvswitch-switch" in str(ovs.classify(argv, "not installed", "", 5))
    other = str(ovs.classify(argv, 1, "ovs-vsctl: something new\nsecond line", 5))
    assert "add-port br9 pf0vf0" in other and "something new" in other and "second line" not in other
