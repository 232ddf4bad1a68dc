"""``vfplugin.reconcile``: every fix and every failure is one line of the Report, and one failure stops nothing.

Running domains come from libvirt's test driver (``test:///<node.xml>``, in process, no daemon) over the example
fixture host; the ledger is a real SQLite file. OVS is an ovsdb socket that does not exist (a failure).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.hosts import write_config
from vfplugin.cli import main
from vfplugin.config import load
from vfplugin.ledger import Ledger, Want
from vfplugin.reconcile import reconcile

pytestmark = pytest.mark.fixtures

GONE = "11111111-2222-4333-8444-000000000000"
NODE = """<node>
{domains}
</node>
"""
DOMAIN = """<domain type='test'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <memory>1024</memory>
  <os><type>hvm</type></os>
  <devices>{hostdevs}</devices>
</domain>"""
HOSTDEV = """<hostdev mode='subsystem' type='pci' managed='yes'>
  <source><address domain='0x0000' bus='0x{bus}' slot='0x{slot}' function='0x{function}'/></source>
</hostdev>"""


def hostdev(vf: str) -> str:
    bus, rest = vf.split(":")[1:]
    slot, function = rest.split(".")
    return HOSTDEV.format(bus=bus, slot=slot, function=function)


def node(tmp_path: Path, *domains: tuple[str, str, list[str]]) -> str:
    """A test-driver URI whose running domains hold the given VFs by hand-written hostdevs."""
    text = NODE.format(
        domains="\n".join(
            DOMAIN.format(name=name, uuid=uuid, hostdevs="".join(hostdev(vf) for vf in vfs))
            for name, uuid, vfs in domains
        )
    )
    path = tmp_path / "node.xml"
    path.write_text(text)
    return f"test://{path}"


@pytest.fixture
def no_ovsdb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_tool("ovs-vsctl")
    monkeypatch.setenv("VFPLUGIN_OVSDB", f"unix:{tmp_path}/no-ovsdb.sock")


def test_a_failure_is_reported_and_every_other_fix_still_happens(tmp_path, no_ovsdb, capsys):
    cfg_path = write_config(tmp_path)
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        ledger.claim(GONE, "gone", [Want(vf="0000:0a:11.0", nic_id="net0")])
    uri = node(
        tmp_path,
        ("web1", "11111111-2222-4333-8444-555555555555", ["0000:0a:10.0", "0000:3b:00.2"]),
        ("web2", "11111111-2222-4333-8444-666666666666", ["0000:0a:10.0"]),  # the same VF: one must conflict
    )
    report = reconcile(load(str(cfg_path)), uri)
    assert "released 0000:0a:11.0: domain gone is not running" in report.fixes
    assert any(line.startswith("claimed 0000:0a:10.0") for line in report.fixes)
    assert any("0000:0a:10.0" in line and line.startswith("claim ") for line in report.failures)
    assert any(line.startswith("OVS: ") and "no-ovsdb.sock" in line for line in report.failures)
    assert all("\n" not in line for line in report.fixes + report.failures)
    assert (report.running, report.leaked) == (2, 0)

    # the command prints every line, the summary last, and exits 1
    assert main(["--config", str(cfg_path), "--connect", uri, "reconcile"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("failed: OVS: ") for line in out)
    assert out[-1].startswith("reconcile: ") and " failed, " in out[-1]


def test_a_clean_host_reports_nothing_and_exits_0(tmp_path, capsys):
    cfg_path = write_config(tmp_path, ovs_offload_nics=[], pools=None, networks=None)
    uri = node(tmp_path, ("web1", "11111111-2222-4333-8444-555555555555", ["0000:0a:10.0"]))
    assert main(["--config", str(cfg_path), "--connect", uri, "reconcile"]) == 0  # claims web1's VF
    capsys.readouterr()
    assert main(["--config", str(cfg_path), "--connect", uri, "reconcile"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "reconcile: 0 fixed, 0 failed, 1 VFs held by 1 running domains, 0 leaked"
    ]


def test_reconcile_claims_a_running_domains_vf_as_the_hook_would(tmp_path):
    """A plain hostdev named by a vf= request that asks a MAC: vfplugin sets that MAC, so the lease records it,
    whether the hook claimed at start or reconcile after a lost ledger (plan.Holding.want, one rule)."""
    cfg_path = write_config(tmp_path, ovs_offload_nics=[], pools=None, networks=None)
    mac = "52:54:00:aa:bb:cc"
    domain = DOMAIN.format(name="web1", uuid="11111111-2222-4333-8444-555555555555",
                           hostdevs=hostdev("0000:0a:10.0")).replace(
        "<devices>", f'<metadata><vfp:nics xmlns:vfp="urn:vfplugin:1"><vfp:nic id="net0" vf="0000:0a:10.0" '
        f'mac="{mac}"/></vfp:nics></metadata><devices>')
    (tmp_path / "node.xml").write_text(NODE.format(domains=domain))
    report = reconcile(load(str(cfg_path)), f"test://{tmp_path / 'node.xml'}")
    assert report.fixes == ["claimed 0000:0a:10.0 for running domain web1"]
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        lease = ledger.lease("0000:0a:10.0")
    assert lease is not None and (lease.nic_id, lease.mac) == ("net0", mac)
