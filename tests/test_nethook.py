"""Tier 4: the network hook as a real process, the way libvirt runs it (argv ``<network> <op> <sub> -``,
``<hookData>`` on stdin, a scrubbed environment), on the example fixture host.

The example host has eth2 (I350, managed: VFs 0000:0a:10.0 0a:10.4 0a:11.0 0a:11.4) and eth3 (ConnectX-5,
VFs 0000:3b:00.2-5, left unmanaged here). The hookData is what libvirt 9.0 sends (issue 12, DESIGN.md 1).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid as uuidlib
from pathlib import Path

import pytest

from tests.hookrun import install, run_hook
from tests.hosts import write_config
from tests.test_hook import HEAVY
from vfplugin.ledger import Ledger, NetNic, Want
from vfplugin.nethook import script

pytestmark = pytest.mark.hook

VF_A, VF_B = "0000:0a:10.0", "0000:0a:10.4"
CX5_VF = "0000:3b:00.2"
U_WEB, U_DB = str(uuidlib.UUID(int=1)), str(uuidlib.UUID(int=2))


@pytest.fixture
def host(tmp_path: Path) -> tuple[Path, Path]:
    """(network hook, config): eth2 managed, no offload PF (no OVS needed here)."""
    config = write_config(tmp_path, sriov_nics=["eth2"], ovs_offload_nics=[], pools={"i350": {"pfs": ["eth2"]}})
    install(tmp_path)  # makes tmp_path/qemu.d: the qemu hook, for the tests that run both
    path = tmp_path / "network.d" / "vfplugin"
    path.parent.mkdir()
    path.write_text(script(sys.executable))
    path.chmod(0o755)
    return path, config


def network_xml(name: str = "vfnet", forward: str = "<forward mode='hostdev' managed='yes'><pf dev='eth2'/>"
                "</forward>", connections: int = 1) -> str:
    return (f"<network connections='{connections}'><name>{name}</name>"
            f"<uuid>{uuidlib.uuid5(uuidlib.NAMESPACE_DNS, name)}</uuid>{forward}</network>")


def pci(address: str) -> str:
    dom, bus, rest = address.split(":")
    slot, fn = rest.split(".")
    return f"<address type='pci' domain='0x{dom}' bus='0x{bus}' slot='0x{slot}' function='0x{fn}'/>"


def hook_data(vf: str, owner: str = "l2n", owner_uuid: str = U_WEB, mac: str = "52:54:00:00:00:01",
              network: str | None = None, port_uuid: str = "11111111-2222-3333-4444-555555555555") -> str:
    return (f"<hookData>{network or network_xml()}<networkport><uuid>{port_uuid}</uuid>"
            f"<owner><name>{owner}</name><uuid>{owner_uuid}</uuid></owner><mac address='{mac}'/>"
            f"<plug type='hostdev-pci' managed='yes'>{pci(vf).replace(' type=' + chr(39) + 'pci' + chr(39), '')}"
            "</plug></networkport></hookData>")


def leases(config: Path) -> list:
    with Ledger.open(config.parent / "ledger.sqlite3") as ledger:
        return ledger.leases()


def test_port_created_claims_the_vf_for_the_owner_and_port_deleted_gives_it_back(host):
    hook, config = host
    data = hook_data(VF_A)
    done = run_hook(hook, "vfnet", "port-created", "begin", data, config)
    assert (done.status, done.stderr) == (0, "")
    [lease] = leases(config)
    assert (lease.vf, lease.domain_uuid, lease.domain_name, lease.state) == (VF_A, U_WEB, "l2n", "active")
    assert (lease.network, lease.port, lease.mac) == ("vfnet", "11111111-2222-3333-4444-555555555555",
                                                      "52:54:00:00:00:01")
    done = run_hook(hook, "vfnet", "port-deleted", "begin", data, config)
    assert (done.status, done.stderr) == (0, "")
    assert leases(config) == []
    # idempotent: libvirt may delete a port twice (a failed start, then a destroy)
    assert run_hook(hook, "vfnet", "port-deleted", "begin", data, config).status == 0
    with Ledger.open(config.parent / "ledger.sqlite3") as ledger:
        assert [(e.action, e.outcome, e.network) for e in ledger.history()] == [
            ("claim", "ok", "vfnet"), ("release", "ok", "vfnet")]


def test_a_vf_another_domain_holds_refuses_the_port_naming_the_holder_and_the_fix(host):
    hook, config = host
    with Ledger.open(config.parent / "ledger.sqlite3") as ledger:
        ledger.claim(U_DB, "l2a", [Want(VF_A, "net0")])  # vfctl gave l2a this VF
    done = run_hook(hook, "vfnet", "port-created", "begin", hook_data(VF_A), config)
    assert done.status == 1
    assert done.stderr == (
        f'vfplugin: VF {VF_A} is in use by domain "l2a"; run \'vfctl reconcile\' (it gives network vfnet a port '
        "for every VF vfplugin holds, so libvirt picks a free one) and start the domain again\n")
    # libvirt then deletes the refused port: the holder keeps its VF
    assert run_hook(hook, "vfnet", "port-deleted", "begin", hook_data(VF_A), config).status == 0
    [lease] = leases(config)
    assert (lease.vf, lease.domain_name) == (VF_A, "l2a")


def test_a_reclaim_port_for_a_vf_vfplugin_leases_to_that_domain_changes_nothing(host):
    """netports.py makes a port owned by the lease's domain; libvirt runs the hook for it too."""
    hook, config = host
    with Ledger.open(config.parent / "ledger.sqlite3") as ledger:
        ledger.reserve(U_DB, "l2a", [Want(VF_A, "net0")])
    data = hook_data(VF_A, owner="l2a", owner_uuid=U_DB)
    assert run_hook(hook, "vfnet", "port-created", "begin", data, config).status == 0
    assert run_hook(hook, "vfnet", "port-deleted", "begin", data, config).status == 0
    [lease] = leases(config)
    assert (lease.vf, lease.state, lease.network) == (VF_A, "reserved", None)


def test_unguarded_networks_pass_every_operation_and_never_create_the_ledger(host, tmp_path):
    hook, config = host
    bridge = network_xml("default", "<forward mode='nat'/><bridge name='virbr0'/>")
    unmanaged = network_xml("cx5", "<forward mode='hostdev' managed='yes'><pf dev='eth3'/></forward>")
    for network, vf in ((bridge, VF_A), (unmanaged, CX5_VF)):
        for op in ("start", "started", "port-created", "port-deleted", "stopped", "updated"):
            done = run_hook(hook, "n", op, "begin", hook_data(vf, network=network), config)
            assert (done.status, done.stdout, done.stderr) == (0, "", "")
    assert not (tmp_path / "ledger.sqlite3").exists()


def test_a_network_listing_vfs_of_a_managed_pf_is_guarded(host):
    hook, config = host
    listed = network_xml("listed", f"<forward mode='hostdev' managed='yes'>{pci(VF_B)}{pci(CX5_VF)}</forward>")
    assert run_hook(hook, "listed", "port-created", "begin", hook_data(VF_B, network=listed), config).status == 0
    assert [lease.vf for lease in leases(config)] == [VF_B]


@pytest.mark.parametrize("data, problem", [
    ("<hookData><network><name>vfnet</name><forward mode='hostdev'>", "malformed XML at line 1"),
    ("<!DOCTYPE h [<!ENTITY x 'hostdev'>]><hookData>&x;</hookData>", "a DOCTYPE"),
    (hook_data("0000:0a:1f.7"), "VF 0000:0a:1f.7 is not in the network's pool"),  # not a VF at all
    (hook_data(VF_A).replace("<name>l2n</name>", "<name>&#108;2n</name>").replace(U_WEB, ""), "no <owner><uuid>"),
    (hook_data(VF_A).replace("hostdev-pci", "direct"), "is not hostdev-pci"),
    (hook_data(VF_A).replace("bus='0x0a'", "bus='0x1ff'"), "PCI address"),
])
def test_hostile_hook_data_on_a_guarded_network_is_refused_in_one_line(host, tmp_path, data, problem):
    hook, config = host
    done = run_hook(hook, "vfnet", "port-created", "begin", data, config)
    assert done.status == 1
    assert done.stderr.startswith("vfplugin: ") and done.stderr.count("\n") == 1 and problem in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "ledger.sqlite3").exists() or leases(config) == []


def test_a_vf_of_the_pool_that_is_not_listed_is_refused(host):
    hook, config = host
    listed = network_xml("listed", f"<forward mode='hostdev' managed='yes'>{pci(VF_B)}</forward>")
    done = run_hook(hook, "listed", "port-created", "begin", hook_data(VF_A, network=listed), config)
    assert done.status == 1 and f"VF {VF_A} is not in the network's pool" in done.stderr


def test_requested_settings_reach_port_created_and_a_refused_one_rolls_the_claim_back(host):
    """The qemu hook recorded trust=on for this MAC; eth2 does not exist in this kernel, so netlink refuses:
    the start is refused in one line and nothing stays claimed."""
    hook, config = host
    with Ledger.open(config.parent / "ledger.sqlite3") as ledger:
        ledger.record_netnics(U_WEB, [NetNic("52:54:00:00:00:01", "net0", "vfnet", {"trust": True})])
    done = run_hook(hook, "vfnet", "port-created", "begin", hook_data(VF_A), config)
    assert done.status == 1 and done.stderr.count("\n") == 1, done.stderr
    assert leases(config) == []


def test_a_network_start_asks_for_the_repair_and_returns_at_once(host):
    hook, config = host
    done = run_hook(hook, "vfnet", "started", "begin", network_xml(connections=0), config)
    assert (done.status, done.stderr) == (0, "")


def imported_by_nethook(op: str, data: str, config: Path) -> set[str]:
    probe = (
        "import sys\nfrom vfplugin.nethook import main\n"
        f"status = main(['vfnet', {op!r}, 'begin', '-'])\n"
        "print(status, ' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    env = {"LC_ALL": "C", "PATH": "/usr/bin:/bin", "VFPLUGIN_CONFIG": str(config),
           "VFPLUGIN_CONFIG_CACHE": str(config.parent / "config-cache")}
    done = subprocess.run(
        [sys.executable, "-I", "-c", probe], input=data.encode(), capture_output=True, env=env, check=True
    )
    status, modules = done.stdout.decode().split(" ", 1)
    assert status == "0", done.stderr
    return set(modules.split())


def test_network_events_import_nothing_heavy(host, tmp_path):
    _, config = host
    bridge_port = (f"<hookData>{network_xml('default', '<forward mode=' + chr(39) + 'nat' + chr(39) + '/>')}"
                   "<networkport><uuid>u</uuid><owner><name>x</name><uuid>u</uuid></owner>"
                   "<plug type='bridge' bridge='virbr0'/></networkport></hookData>")
    # a bridge or NAT network: nothing of vfplugin's beyond the package and its hook module
    assert {m for m in imported_by_nethook("port-created", bridge_port, config)
            if m in HEAVY | {"sqlite3", "xml"}} == set()
    # a guarded one: no lxml, pyroute2, dataclasses... (PyYAML only because a test's --config path is never
    # cached, config.load; the hook's /etc/vfplugin/vfplugin.yaml is)
    heavy = imported_by_nethook("port-created", hook_data(VF_A), config) & HEAVY
    assert heavy <= {"yaml", "re", "enum"}
    assert imported_by_nethook("port-deleted", hook_data(VF_A), config) & HEAVY <= {"yaml", "re", "enum"}
    assert leases(config) == []


def test_install_hook_installs_the_network_hook_next_to_the_qemu_hook(host, tmp_path):
    _, config = host
    from tests.hookrun import vfctl

    done = vfctl("install-hook", "--hooks-dir", str(tmp_path / "hooks" / "qemu.d"), config=config)
    assert done.returncode == 0, done.stderr
    installed = tmp_path / "hooks" / "network.d" / "vfplugin"
    python = "/usr/bin/python3" if os.environ.get("VFPLUGIN_INSTALLED") == "1" else sys.executable  # vfctl's own
    assert installed.read_text() == script(python) and installed.stat().st_mode & 0o777 == 0o755
    assert run_hook(installed, "vfnet", "port-created", "begin", hook_data(VF_A), config).status == 0
    assert [lease.vf for lease in leases(config)] == [VF_A]


def test_a_network_nic_is_written_as_a_network_interface_and_its_settings_reach_port_created(host, tmp_path):
    """vfctl rewrites <vfp:nic network=...> into <interface type='network'>; the qemu hook records what the
    nic asks for at prepare begin (by domain UUID + MAC); port-created applies it (here eth2 is no real PF,
    so netlink refuses trust and the port is refused in one line, with nothing left claimed)."""
    from tests.test_hook import rewritten

    hook, config = host
    xml = rewritten(tmp_path, config, "l2g", '<vfp:nic id="net0" network="vfnet" trust="on" spoofchk="off" '
                    'vlan="100"/>', reserve=False)
    assert "<interface type='network'>" in xml or '<interface type="network">' in xml
    for part in ("network='vfnet'", "ua-vfplugin-net0", "<tag id='100'/>"):
        assert part in xml.replace('"', "'"), part
    uuid = xml.split("<uuid>")[1].split("</uuid>")[0]
    mac = xml.replace('"', "'").split("<mac address='")[1].split("'")[0]
    assert run_hook(install(tmp_path), "l2g", "prepare", "begin", xml, config).status == 0
    with Ledger.open(config.parent / "ledger.sqlite3") as ledger:
        assert ledger.netnic(uuid, mac) == NetNic(mac, "net0", "vfnet", {"trust": True, "spoofchk": False})
        assert ledger.leases() == []  # the network picks the VF: nothing was reserved or claimed
    done = run_hook(hook, "vfnet", "port-created", "begin", hook_data(VF_A, "l2g", uuid, mac), config)
    assert done.status == 1 and "trust" in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert leases(config) == []


def test_vfctl_list_and_history_show_a_vf_held_through_a_network_with_its_network(host):
    import json

    from tests.hookrun import vfctl

    hook, config = host
    assert run_hook(hook, "vfnet", "port-created", "begin", hook_data(VF_A), config).status == 0
    listed = {item["address"]: item for item in json.loads(vfctl("list", "--json", config=config).stdout)}
    assert (listed[VF_A]["state"], listed[VF_A]["domain"], listed[VF_A]["network"]) == ("active", "l2n", "vfnet")
    assert listed[VF_B]["network"] is None
    [claim] = json.loads(vfctl("history", "--vf", VF_A, "--json", config=config).stdout)
    assert (claim["action"], claim["domain"], claim["network"]) == ("claim", "l2n", "vfnet")


def test_a_port_nobody_asked_settings_for_gets_its_pools_settings(tmp_path):
    """Any libvirt client's domain on a guarded network: the pool's configured settings reach port-created.
    eth2 does not exist in this kernel, so applying trust fails: the refusal names it, nothing stays claimed."""
    config = write_config(tmp_path, sriov_nics=["eth2"], ovs_offload_nics=[],
                          pools={"i350": {"pfs": ["eth2"], "settings": {"trust": True}}})
    install(tmp_path)
    hook = tmp_path / "network.d" / "vfplugin"
    hook.parent.mkdir()
    hook.write_text(script(sys.executable))
    hook.chmod(0o755)
    done = run_hook(hook, "vfnet", "port-created", "begin", hook_data(VF_A), config)
    assert done.status == 1 and done.stderr.count("\n") == 1 and "trust" in done.stderr, done.stderr
    assert leases(config) == []
