"""``vfctl history``, ``vfctl release`` and ``vfctl explain`` on a real ledger file and the example host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.hosts import write_config
from vfplugin.cli import main
from vfplugin.commands.history import KEYS
from vfplugin.ledger import Ledger, Want

pytestmark = pytest.mark.sqlite

WEB_UUID = "11111111-2222-4333-8444-555555555555"
VF1, VF2, VF3 = "0000:0a:10.0", "0000:0a:10.4", "0000:3b:00.2"
DOMAIN_XML = """<domain type='qemu'>
  <name>web1</name>
  <uuid>{uuid}</uuid>
  <memory unit='MiB'>64</memory>
  <vcpu cpuset='4-5'>2</vcpu>
  <metadata>
    <vfp:nics xmlns:vfp="urn:vfplugin:1">
{nics}
    </vfp:nics>
  </metadata>
  <devices/>
</domain>
"""


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return write_config(tmp_path)


def vfctl(cfg: Path, *argv: str) -> int:
    return main(["--config", str(cfg), *argv])


def ledger_path(cfg: Path) -> Path:
    return cfg.parent / "ledger.sqlite3"


def seed(cfg: Path) -> None:
    with Ledger.open(ledger_path(cfg)) as ledger:
        ledger.claim(WEB_UUID, "web1", [Want(VF1, "net0")])
        ledger.claim("u-db", "db1", [Want(VF2, "net0"), Want(VF3, None)])


# --- history -----------------------------------------------------------------------------------------------


def test_history_json_has_the_contract_keys_and_filters_by_domain(cfg, capsys):
    seed(cfg)
    assert vfctl(cfg, "history", "--json", "--domain", "db1") == 0
    items = json.loads(capsys.readouterr().out)
    assert [tuple(i) for i in items] == [KEYS, KEYS]
    assert [(i["domain"], i["vf"], i["action"], i["outcome"]) for i in items] == [
        ("db1", VF2, "claim", "ok"), ("db1", VF3, "claim", "ok")]
    assert items[0]["time"].endswith("+00:00")


def test_history_filters_by_uuid_and_by_vf_in_any_spelling(cfg, capsys):
    seed(cfg)
    assert vfctl(cfg, "history", "--json", "--domain", WEB_UUID) == 0
    assert [i["vf"] for i in json.loads(capsys.readouterr().out)] == [VF1]
    assert vfctl(cfg, "history", "--json", "--vf", "3b:00.2") == 0
    assert [i["domain"] for i in json.loads(capsys.readouterr().out)] == ["db1"]


def test_history_table_lists_events_oldest_first(cfg, capsys):
    seed(cfg)
    assert vfctl(cfg, "history") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TIME", "(UTC)", "DOMAIN", "VF", "ACTION", "OUTCOME", "DETAIL"]
    assert [line.split()[2:6] for line in lines[1:]] == [
        ["web1", VF1, "claim", "ok"], ["db1", VF2, "claim", "ok"], ["db1", VF3, "claim", "ok"]]


def test_history_without_a_ledger_is_empty_and_creates_nothing(cfg, capsys):
    assert vfctl(cfg, "history") == 0
    assert "no events (no ledger at" in capsys.readouterr().err
    assert not ledger_path(cfg).exists()


def test_a_corrupt_ledger_is_one_line_and_exit_1(cfg, capsys):
    ledger_path(cfg).write_bytes(b"garbage" * 1000)
    assert vfctl(cfg, "history") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"vfctl: ledger {ledger_path(cfg)}: corrupt (file is not a database); move it")


# --- release -----------------------------------------------------------------------------------------------


def test_release_by_domain_name_frees_that_domain_only_and_says_what(cfg, capsys):
    seed(cfg)
    assert vfctl(cfg, "release", "--domain", "db1") == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"released VF {VF2} of domain db1 (nic net0, active lease)",
        f"released VF {VF3} of domain db1 (adopted hostdev, active lease)",
    ]
    assert "warning: an active lease was freed" in err
    with Ledger.open(ledger_path(cfg)) as ledger:
        assert [(x.vf, x.domain_name) for x in ledger.leases()] == [(VF1, "web1")]
        last = ledger.history(domain="db1")[-1]
        assert (last.action, last.outcome, last.detail) == (
            "release", "ok", "released by hand (vfctl release) (active lease)")


@pytest.mark.parametrize("spelling", [WEB_UUID.upper(), WEB_UUID.replace("-", "")])
def test_release_by_domain_uuid_in_any_spelling(cfg, capsys, spelling):
    seed(cfg)
    assert vfctl(cfg, "release", "--domain", spelling) == 0
    assert capsys.readouterr().out == f"released VF {VF1} of domain web1 (nic net0, active lease)\n"


def test_release_of_a_domain_holding_nothing_says_so_exits_0_and_is_journaled(cfg, capsys):
    seed(cfg)
    assert vfctl(cfg, "release", "--domain", "ghost") == 0
    assert capsys.readouterr().out == "domain ghost holds no VF lease; nothing released\n"
    with Ledger.open(ledger_path(cfg)) as ledger:
        last = ledger.history(domain="ghost")[-1]
        assert (last.action, last.outcome) == ("release", "noop")
        assert len(ledger.leases()) == 3


def test_release_by_vf_frees_whoever_holds_it(cfg, capsys):
    seed(cfg)
    assert vfctl(cfg, "release", "--vf", "0a:10.4") == 0
    assert capsys.readouterr().out == f"released VF {VF2} of domain db1 (nic net0, active lease)\n"
    assert vfctl(cfg, "release", "--vf", VF2) == 0
    assert capsys.readouterr().out == f"VF {VF2} was not held by any domain; nothing released\n"


def test_release_without_a_ledger_says_there_is_nothing(cfg, capsys):
    assert vfctl(cfg, "release", "--domain", "web1") == 0
    assert "nothing to release: there is no ledger at" in capsys.readouterr().out
    assert not ledger_path(cfg).exists()


def test_release_needs_a_domain_or_a_vf(cfg, capsys):
    with pytest.raises(SystemExit) as e:
        vfctl(cfg, "release")
    assert e.value.code == 2


# --- explain -----------------------------------------------------------------------------------------------


def domain_file(tmp_path: Path, *nics: str, uuid: str = WEB_UUID) -> str:
    path = tmp_path / "web1.xml"
    path.write_text(DOMAIN_XML.format(uuid=uuid, nics="\n".join(f"      {n}" for n in nics)))
    return str(path)


def test_explain_shows_the_choice_its_reasons_and_the_drops(cfg, tmp_path, capsys):
    xml = domain_file(tmp_path, '<vfp:nic id="net0" pool="fast"/>')
    assert vfctl(cfg, "explain", xml) == 0
    out = capsys.readouterr().out
    assert f"domain web1 (uuid {WEB_UUID}), NUMA nodes: 1" in out  # <vcpu cpuset='4-5'>: CPUs of node 1
    assert "nic net0 (pool=fast) -> 0000:3b:00.2" in out
    assert ("    1. 0000:3b:00.2  eth3 vf0  node 1  NUMA node 1 matches the domain's 1; "
            "PF eth3: 0 leases of other domains; never released") in out
    assert "    0000:3b:00.4  vfio: bound to vfio-pci outside vfplugin" in out
    assert "    4 VFs  selector: not in pool fast" in out
    assert not ledger_path(cfg).exists()  # explaining reserves nothing


def test_explain_reads_the_ledger_holders_and_sticky_history(cfg, tmp_path, capsys):
    with Ledger.open(ledger_path(cfg)) as ledger:
        ledger.claim("u-db", "db1", [Want("0000:3b:00.2", "net0")])
        ledger.claim(WEB_UUID, "web1", [Want("0000:0a:10.4", "net1")])
        ledger.release(WEB_UUID)
    xml = domain_file(tmp_path, '<vfp:nic id="net0" pool="fast"/>', '<vfp:nic id="net1" pf="eth2"/>')
    assert vfctl(cfg, "explain", xml) == 0
    out = capsys.readouterr().out
    assert "    0000:3b:00.2  held: held by db1" in out
    assert "nic net0 (pool=fast) -> 0000:3b:00.3" in out
    assert "nic net1 (pf=eth2) -> 0000:0a:10.4" in out
    assert "sticky: nic net1 had it last" in out


def test_explain_says_why_a_nic_gets_nothing_and_exits_1(cfg, tmp_path, capsys):
    xml = domain_file(tmp_path, '<vfp:nic id="net0" pool="slow"/>', '<vfp:nic id="net1" pf="eth2"/>')
    assert vfctl(cfg, "explain", xml) == 1
    out = capsys.readouterr().out
    assert "nic net0 (pool=slow): no VF: unknown pool 'slow' (configured pools: fast)" in out
    assert "nic net1 (pf=eth2) -> 0000:0a:10.0" in out


def test_explain_of_a_domain_without_requests(cfg, tmp_path, capsys):
    path = tmp_path / "plain.xml"
    path.write_text("<domain type='qemu'><name>plain</name><memory>65536</memory></domain>")
    assert vfctl(cfg, "explain", str(path)) == 0
    assert "domain plain requests no VF" in capsys.readouterr().out
