"""OVS ports vfplugin does not own stay untouched, and its own are always cleaned up (issue 15), against a real
Open vSwitch (tests/ovs_harness.py): vfplugin.ovs directly, the hook process, ``vfctl release`` and
``vfctl reconcile``.

vfplugin's ports carry ``external_ids:vfplugin=1``; a port of the same name without it is an admin's (or
another tool's), whatever bridge it is on.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require, require_root, require_tool
from tests.hookrun import domain_xml, install, run_hook, vfctl
from tests.hosts import host_settings, write_config
from tests.ovs_harness import SCHEMA, TOOLS, OvsSandbox, inside_netns, ovs_sandbox
from vfplugin import ovs
from vfplugin.errors import OvsError
from vfplugin.ledger import Ledger

pytestmark = pytest.mark.ovs

VF, REP = "0000:3b:00.2", "pf0vf0"  # the example host's first ConnectX-5 VF and its representor
VF2, REP2 = "0000:3b:00.3", "pf0vf1"
VM_A, VM_B = (str(uuid.UUID(int=n)) for n in (0xA, 0xB))
WEB_UUID = "11111111-2222-4333-8444-555555555555"


@pytest.fixture
def box(monkeypatch: pytest.MonkeyPatch) -> Iterator[OvsSandbox]:
    require_root()
    require_tool(*TOOLS)
    require(SCHEMA.exists(), f"{SCHEMA} is missing (openvswitch-common)")
    with ovs_sandbox((REP, REP2)) as sandbox:
        sandbox.add_bridge("br1")
        sandbox.add_bridge("br2")
        monkeypatch.setenv(ovs.ENV_VAR, sandbox.db)
        yield sandbox


def admin_port(box: OvsSandbox, bridge: str = "br2", name: str = REP) -> None:
    """A port an administrator made by hand: no external_ids:vfplugin."""
    box.vsctl("add-port", bridge, name, "--", "set", "Interface", name, "external_ids:iface-id=admin-uplink")


# --- vfplugin.ovs ------------------------------------------------------------------------------------------


def test_unplug_never_deletes_a_port_vfplugin_did_not_make(box: OvsSandbox) -> None:
    admin_port(box)
    with inside_netns(box.netns):
        ovs.unplug(REP)
    assert box.bridge_of(REP) == "br2"
    assert box.external_ids(REP)["iface-id"] == "admin-uplink"


def test_unplug_for_one_domain_leaves_the_port_another_domain_holds(box: OvsSandbox) -> None:
    with inside_netns(box.netns):
        ovs.plug("br1", REP, domain_uuid=VM_B, iface_id="vm-b-net0", mac=None, vlan=None)
        ovs.unplug(REP, owner=VM_A)
        assert box.bridge_of(REP) == "br1"
        ovs.unplug(REP, owner=VM_B)
    assert box.bridge_of(REP) is None


def test_plug_refuses_a_representor_on_another_bridge_naming_the_bridge_and_owner(box: OvsSandbox) -> None:
    admin_port(box)
    with inside_netns(box.netns), pytest.raises(OvsError) as info:
        ovs.plug("br1", REP, domain_uuid=VM_A, iface_id="vm-a-net0", mac=None, vlan=100)
    text = str(info.value)
    assert "\n" not in text and "br2" in text and "admin-uplink" in text and REP in text
    assert box.bridge_of(REP) == "br2"  # where the admin put it, with what the admin wrote
    assert box.external_ids(REP) == {"vm-uuid": None, "iface-id": "admin-uplink", "attached-mac": None,
                                     "vfplugin": None}


def test_plug_refuses_an_admins_port_on_the_same_bridge_too(box: OvsSandbox) -> None:
    admin_port(box, bridge="br1")
    with inside_netns(box.netns), pytest.raises(OvsError, match="br1"):
        ovs.plug("br1", REP, domain_uuid=VM_A, iface_id="vm-a-net0", mac=None, vlan=None)
    assert box.external_ids(REP)["vfplugin"] is None


# --- the hook ----------------------------------------------------------------------------------------------


def rewritten(tmp_path: Path, config: Path, name: str = "web1", vf: str = VF) -> str:
    source = tmp_path / f"{name}.xml"
    source.write_text(domain_xml(name, uuid=WEB_UUID, nics=f'<vfp:nic id="net0" vf="{vf}" vlan="100"/>'))
    done = vfctl("rewrite", str(source), config=config)
    assert done.returncode == 0, done.stderr
    return done.stdout


def hook(box: OvsSandbox, tmp_path: Path, config: Path, op: str, sub: str, xml: str):  # type: ignore[no-untyped-def]
    return run_hook(install(tmp_path), "web1", op, sub, xml, config, netns=box.netns,
                    extra_env={"VFPLUGIN_OVSDB": box.db})


def leases(tmp_path: Path) -> list:
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        return ledger.leases()


def test_a_refused_start_leaves_an_admins_port_of_the_same_name_alone(box: OvsSandbox, tmp_path: Path) -> None:
    admin_port(box)
    config = write_config(tmp_path, networks=["eth3/br9/bcast0"])  # the start fails: no bridge br9 either
    xml = rewritten(tmp_path, config)
    result = hook(box, tmp_path, config, "prepare", "begin", xml)
    assert result.status == 1 and result.stderr.count("\n") == 1
    for op, sub in (("stopped", "end"), ("release", "end")):
        assert hook(box, tmp_path, config, op, sub, xml).status == 0
    assert box.bridge_of(REP) == "br2" and box.external_ids(REP)["iface-id"] == "admin-uplink"
    assert leases(tmp_path) == []


def test_a_start_on_a_representor_an_admin_bridged_elsewhere_is_refused(box: OvsSandbox, tmp_path: Path) -> None:
    admin_port(box)
    config = write_config(tmp_path)
    xml = rewritten(tmp_path, config)
    result = hook(box, tmp_path, config, "prepare", "begin", xml)
    assert result.status == 1 and "br2" in result.stderr and "admin-uplink" in result.stderr
    assert box.bridge_of(REP) == "br2"
    assert leases(tmp_path) == []


def test_a_pf_dropped_from_ovs_offload_nics_while_its_vm_runs_still_loses_its_port(
    box: OvsSandbox, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    xml = rewritten(tmp_path, config)
    assert hook(box, tmp_path, config, "prepare", "begin", xml).status == 0
    assert box.bridge_of(REP) == "br1"
    # the admin moves eth3 out of OVS offload (still managed, as a plain SR-IOV PF) while web1 runs
    settings = host_settings()
    write_config(tmp_path, sriov_nics=[*settings["sriov_nics"], "eth3"], ovs_offload_nics=[])
    for op, sub in (("stopped", "end"), ("release", "end")):
        assert hook(box, tmp_path, config, op, sub, xml).status == 0
    assert box.bridge_of(REP) is None
    assert leases(tmp_path) == []


# --- vfctl release, vfctl reconcile ------------------------------------------------------------------------


def test_vfctl_release_unplugs_the_representor_as_the_hook_does(box: OvsSandbox, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    xml = rewritten(tmp_path, config)
    assert hook(box, tmp_path, config, "prepare", "begin", xml).status == 0
    assert box.bridge_of(REP) == "br1"
    with inside_netns(box.netns):
        done = vfctl("release", "--domain", "web1", config=config)
    assert done.returncode == 0, done.stderr
    assert box.bridge_of(REP) is None
    assert leases(tmp_path) == []


def empty_node(tmp_path: Path) -> str:
    """A libvirt test-driver URI with no domain running."""
    path = tmp_path / "node.xml"
    path.write_text("<node/>")
    return f"test://{path}"


def test_reconcile_unplugs_vfplugins_ports_even_with_no_offload_pf_configured(
    box: OvsSandbox, tmp_path: Path
) -> None:
    with inside_netns(box.netns):
        ovs.plug("br1", REP, domain_uuid=VM_A, iface_id="gone-net0", mac=None, vlan=None)
    admin_port(box, name=REP2)
    config = write_config(tmp_path, ovs_offload_nics=[], pools=None, networks=None)
    with inside_netns(box.netns):
        done = vfctl("--connect", empty_node(tmp_path), "reconcile", config=config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"unplugged OVS port {REP}" in done.stdout
    assert box.bridge_of(REP) is None and box.bridge_of(REP2) == "br2"  # the admin's port stays


def test_reconcile_reports_every_ovs_failure_and_still_makes_every_other_fix(
    box: OvsSandbox, tmp_path: Path
) -> None:
    with inside_netns(box.netns):
        ovs.plug("br1", REP, domain_uuid=VM_A, iface_id="gone-net0", mac=None, vlan=None)
        ovs.plug("br1", REP2, domain_uuid=VM_B, iface_id="gone-net1", mac=None, vlan=None)
    config = write_config(tmp_path)
    uri = empty_node(tmp_path)
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        from vfplugin.ledger import Want

        ledger.claim(WEB_UUID, "gone", [Want(vf="0000:0a:11.0", nic_id="net0")])
    box.stop_vswitchd()  # nothing can be applied: every unplug times out
    with inside_netns(box.netns):
        done = vfctl("--connect", uri, "reconcile", config=config)
    lines = done.stdout.splitlines()
    assert done.returncode == 1
    assert "released 0000:0a:11.0: domain gone is not running" in lines
    assert sum(1 for line in lines if line.startswith("failed: unplug OVS port")) == 2
    assert lines[-1].startswith("reconcile: 1 fixed, 2 failed")
    assert leases(tmp_path) == []
