"""``vfctl explain`` says what ``vfctl define`` does: one rule (rewrite.inputs) decides for both which nics are
chosen for, from which VFs, with which sticky history; a vf= request naming a hand-written hostdev of the
domain is bound to it (issue 15)."""

from __future__ import annotations

import pytest

from tests.hosts import write_config
from vfplugin.cli import main
from vfplugin.ledger import Ledger

pytestmark = pytest.mark.sqlite

WEB_UUID = "11111111-2222-4333-8444-555555555555"
HAND_VF = "0000:0a:10.4"
DOMAIN_XML = f"""<domain type='qemu'>
  <name>web1</name>
  <uuid>{WEB_UUID}</uuid>
  <memory unit='MiB'>64</memory>
  <metadata>
    <vfp:nics xmlns:vfp="urn:vfplugin:1">
      <vfp:nic id="net0" vf="{HAND_VF}"/>
      <vfp:nic id="net1" pf="eth2"/>
    </vfp:nics>
  </metadata>
  <devices>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x0000' bus='0x0a' slot='0x10' function='0x4'/></source>
    </hostdev>
  </devices>
</domain>
"""


def test_a_vf_request_naming_a_hand_written_hostdev_is_explained_as_define_keeps_it(tmp_path, capsys):
    cfg = write_config(tmp_path)
    path = tmp_path / "web1.xml"
    path.write_text(DOMAIN_XML)

    assert main(["--config", str(cfg), "explain", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"nic net0 (vf={HAND_VF}) -> {HAND_VF}" in out and "hand-written" in out
    assert "not managed" not in out
    explained = {line.split(" ")[1]: line.rsplit(" -> ", 1)[1].split()[0]
                 for line in out.splitlines() if line.startswith("nic ") and " -> " in line}

    # what define would do: choose, write and reserve (the rewriter define uses), nothing left to libvirt
    assert main(["--config", str(cfg), "rewrite", "--reserve", str(path)]) == 0
    capsys.readouterr()
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        reserved = {lease.nic_id: lease.vf for lease in ledger.leases() if lease.domain_uuid == WEB_UUID}
    assert reserved == explained == {"net0": HAND_VF, "net1": explained["net1"]}
    assert explained["net1"] != HAND_VF
