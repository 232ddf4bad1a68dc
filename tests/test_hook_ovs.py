"""Tiers 4 + 6 together: the hook process, run as libvirt runs it, plugging a switchdev VF's representor into a
real Open vSwitch at ``prepare begin`` and taking it out at ``stopped end``/``release end``.

The example fixture host's eth3 is a ConnectX-5 in switchdev mode whose VF 0000:3b:00.2 has the representor
pf0vf0; the private OVS of tests/ovs_harness.py has a veth of that name in its own network namespace, and
the hook runs inside that namespace (``ip netns exec``) with VFPLUGIN_OVSDB pointing at the private ovsdb.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require, require_root, require_tool
from tests.hookrun import domain_xml, install, run_hook, vfctl
from tests.hosts import write_config
from tests.ovs_harness import SCHEMA, TOOLS, OvsSandbox, ovs_sandbox
from vfplugin.ledger import Ledger

pytestmark = pytest.mark.ovs

VF, REPRESENTOR = "0000:3b:00.2", "pf0vf0"


@pytest.fixture
def box() -> Iterator[OvsSandbox]:
    require_root()
    require_tool(*TOOLS)
    require(SCHEMA.exists(), f"{SCHEMA} is missing (openvswitch-common)")
    with ovs_sandbox((REPRESENTOR,)) as sandbox:
        sandbox.add_bridge("br1")
        yield sandbox


def test_representor_is_plugged_for_the_vms_lifetime(box: OvsSandbox, tmp_path: Path):
    hook, config = install(tmp_path), write_config(tmp_path)
    source = tmp_path / "web1.xml"
    source.write_text(domain_xml("web1", nics=f'<vfp:nic id="net0" vf="{VF}" vlan="100"/>'))
    done = vfctl("rewrite", str(source), config=config)
    assert done.returncode == 0, done.stderr
    xml = done.stdout
    env = {"VFPLUGIN_OVSDB": box.db}

    result = run_hook(hook, "web1", "prepare", "begin", xml, config, netns=box.netns, extra_env=env)
    assert result.status == 0, result.stderr
    assert box.bridge_of(REPRESENTOR) == "br1"
    assert box.get("Port", REPRESENTOR, "tag") == "100"
    ids = box.external_ids(REPRESENTOR)
    assert ids["vfplugin"] == "1" and ids["iface-id"] == "web1-net0"
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        [lease] = ledger.leases()
        assert (lease.vf, lease.state) == (VF, "active")

    assert run_hook(hook, "web1", "stopped", "end", xml, config, netns=box.netns, extra_env=env).status == 0
    assert box.bridge_of(REPRESENTOR) is None
    assert run_hook(hook, "web1", "release", "end", xml, config, netns=box.netns, extra_env=env).status == 0
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        assert ledger.leases() == []


def test_missing_bridge_refuses_the_start_and_frees_the_claim(box: OvsSandbox, tmp_path: Path):
    hook = install(tmp_path)
    config = write_config(tmp_path, networks=["eth3/br9/bcast0"])
    source = tmp_path / "web1.xml"
    source.write_text(domain_xml("web1", nics=f'<vfp:nic id="net0" vf="{VF}"/>'))
    xml = vfctl("rewrite", str(source), config=config).stdout
    result = run_hook(hook, "web1", "prepare", "begin", xml, config, netns=box.netns,
                      extra_env={"VFPLUGIN_OVSDB": box.db})
    assert result.status == 1
    assert result.stderr.startswith("vfplugin: Open vSwitch:") and "br9" in result.stderr
    assert result.stderr.count("\n") == 1
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        assert ledger.leases() == []
