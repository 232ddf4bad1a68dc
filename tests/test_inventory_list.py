"""discover() builds the inventory from sysfs + pci.ids + pools; vfctl list shows it as a table or JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES, ROOT
from tests.hosts import write_config
from vfplugin.addresses import PciAddress
from vfplugin.commands.list_vfs import KEYS, rows, table
from vfplugin.config import load
from vfplugin.errors import PfNotFound, PfNoVfs
from vfplugin.inventory import Inventory, discover
from vfplugin.pciids import PciIds

pytestmark = pytest.mark.fixtures

PCIIDS = PciIds(FIXTURES / "pci.ids")


def inventory_of(tmp_path: Path, host: str, **overrides: Any) -> Inventory:
    return discover(load(str(write_config(tmp_path, host, **overrides))), pciids=PCIIDS)


@dataclass(frozen=True)
class FakeLease:
    state: str
    domain_name: str
    mac: str | None = None
    vlan: int | None = None


# --- discover ------------------------------------------------------------------------------------------


def test_example_host_inventory(tmp_path: Path) -> None:
    inventory = inventory_of(tmp_path, "example")
    assert inventory.problems == ()
    facts = [(str(v.address), v.pf, v.vf_index, v.model, v.numa_node, v.iommu_group, v.driver, v.netdev,
              v.representor, v.pools) for v in inventory.vfs]
    i350, cx5 = "I350 Ethernet Controller Virtual Function", "ConnectX-5 Virtual Function"
    assert facts == [
        ("0000:0a:10.0", "eth2", 0, i350, 0, 30, "igbvf", "enp10s16", None, ()),
        ("0000:0a:10.4", "eth2", 1, i350, 0, 31, "igbvf", "enp10s16f4", None, ()),
        ("0000:0a:11.0", "eth2", 2, i350, 0, 32, "vfio-pci", None, None, ()),
        ("0000:0a:11.4", "eth2", 3, i350, 0, 33, "vfio-pci", None, None, ()),
        ("0000:3b:00.2", "eth3", 0, cx5, 1, 41, "mlx5_core", "enp59s0f0v0", "pf0vf0", ("fast",)),
        ("0000:3b:00.3", "eth3", 1, cx5, 1, 42, "mlx5_core", "enp59s0f0v1", "pf0vf1", ("fast",)),
        ("0000:3b:00.4", "eth3", 2, cx5, 1, 43, "vfio-pci", None, "pf0vf2", ("fast",)),
        ("0000:3b:00.5", "eth3", 3, cx5, 1, 44, "vfio-pci", None, "pf0vf3", ("fast",)),
    ]
    assert {(v.vendor_id, v.device_id) for v in inventory.vfs} == {("8086", "1520"), ("15b3", "1018")}
    assert str(inventory.vfs[4].pf_address) == "0000:3b:00.0"


def test_intel_host_inventory_reports_the_pf_without_vfs_and_goes_on(tmp_path: Path) -> None:
    inventory = inventory_of(tmp_path, "intel")
    assert [type(p) for p in inventory.problems] == [PfNoVfs]
    assert str(inventory.problems[0]) == (
        "PF 'ens1f1' (0000:81:00.1) has 0 VFs (sriov_numvfs is 0, the NIC supports 64); "
        "run 'vfctl pf set-vfs ens1f1 64'")
    models = {(v.pf, v.model, v.pool) for v in inventory.vfs}
    assert models == {
        ("enp1s0f0", "82576 Virtual Function", "igb"),
        ("ens1f0", "Ethernet Virtual Function 700 Series", "x700"),
        ("ens2f0", "Ethernet Adaptive Virtual Function", "e810"),
    }
    assert len(inventory.vfs) == 6


def test_missing_pf_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    inventory = inventory_of(tmp_path, "noiommu")
    assert [type(p) for p in inventory.problems] == [PfNotFound]
    assert "PF 'eth9' does not exist" in str(inventory.problems[0])
    assert [str(v.address) for v in inventory.vfs] == ["0000:01:10.0", "0000:01:10.2", "0000:01:10.4"]
    assert all(v.numa_node is None and v.iommu_group is None for v in inventory.vfs)


def test_unknown_device_model_is_its_ids(tmp_path: Path) -> None:
    inventory = discover(load(str(write_config(tmp_path, "example"))), pciids=PciIds(tmp_path / "none.ids"))
    assert {v.model for v in inventory.vfs} == {"8086:1520", "15b3:1018"}


def test_inventory_get_by_address_or_text(tmp_path: Path) -> None:
    inventory = inventory_of(tmp_path, "example")
    vf = inventory.get("0000:3b:00.3")
    assert vf is not None and vf.representor == "pf0vf1"
    assert inventory.get(PciAddress.parse("0000:3b:00.3")) is vf
    assert inventory.get("0000:3b:00.7") is None


# --- rows (pure) ---------------------------------------------------------------------------------------


def test_rows_have_exactly_the_contract_keys_and_free_state(tmp_path: Path) -> None:
    items = rows(inventory_of(tmp_path, "example"), {})
    assert all(tuple(item) == KEYS for item in items)
    assert items[2] == {
        "address": "0000:0a:11.0", "pf": "eth2", "pf_address": "0000:0a:00.0", "vf_index": 2,
        "vendor_id": "8086", "device_id": "1520", "model": "I350 Ethernet Controller Virtual Function",
        "numa_node": 0, "iommu_group": 32, "driver": "vfio-pci", "netdev": None, "representor": None,
        "pool": None, "state": "free", "domain": None, "network": None, "mac": None, "vlan": None,
    }


def test_rows_show_the_lease(tmp_path: Path) -> None:
    leases = {"0000:3b:00.2": FakeLease("active", "web1", "52:54:00:aa:bb:cc", 100),
              "0000:0a:10.0": FakeLease("reserved", "db1")}
    items = {i["address"]: i for i in rows(inventory_of(tmp_path, "example"), leases)}
    assert (items["0000:3b:00.2"]["state"], items["0000:3b:00.2"]["domain"]) == ("active", "web1")
    assert (items["0000:3b:00.2"]["mac"], items["0000:3b:00.2"]["vlan"]) == ("52:54:00:aa:bb:cc", 100)
    assert (items["0000:0a:10.0"]["state"], items["0000:0a:10.0"]["mac"]) == ("reserved", None)
    assert items["0000:3b:00.3"]["state"] == "free"


def test_rows_filters(tmp_path: Path) -> None:
    inventory = inventory_of(tmp_path, "example")
    leases = {"0000:3b:00.2": FakeLease("active", "web1")}

    def addresses(**filters: Any) -> list[str]:
        return [i["address"] for i in rows(inventory, leases, **filters)]

    assert addresses(pf="eth2") == ["0000:0a:10.0", "0000:0a:10.4", "0000:0a:11.0", "0000:0a:11.4"]
    assert addresses(pool="fast", free=True) == ["0000:3b:00.3", "0000:3b:00.4", "0000:3b:00.5"]
    assert addresses(model="ConnectX-5 Virtual Function", pf="eth2") == []
    assert len(addresses(model="I350 Ethernet Controller Virtual Function")) == 4
    assert addresses(pool="nope") == []


def test_table_has_a_header_and_dashes_for_absent_values(tmp_path: Path) -> None:
    text = table(rows(inventory_of(tmp_path, "example"), {}, pf="eth3"))
    lines = text.splitlines()
    assert lines[0].split() == ["ADDRESS", "PF", "VF", "MODEL", "VENDOR:DEVICE", "NUMA", "IOMMU", "DRIVER",
                                "STATE", "DOMAIN", "MAC", "VLAN"]
    assert lines[3].split() == ["0000:3b:00.4", "eth3", "2", "ConnectX-5", "Virtual", "Function", "15b3:1018",
                                "1", "43", "vfio-pci", "free", "-", "-", "-"]


# --- vfctl list, as a process ---------------------------------------------------------------------------


def vfctl(config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vfplugin.cli", "--config", str(config), *argv],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.mark.parametrize(
    "host, expected",
    [
        ("example", {"0000:0a:10.0", "0000:0a:10.4", "0000:0a:11.0", "0000:0a:11.4",
                     "0000:3b:00.2", "0000:3b:00.3", "0000:3b:00.4", "0000:3b:00.5"}),
        ("intel", {"0000:01:10.0", "0000:01:10.2", "0000:81:02.0", "0000:81:02.1",
                   "0000:82:01.0", "0000:82:01.1"}),
        ("noiommu", {"0000:01:10.0", "0000:01:10.2", "0000:01:10.4"}),
    ],
)
def test_vfctl_list_json_lists_exactly_the_vfs_present(tmp_path: Path, host: str, expected: set[str]) -> None:
    result = vfctl(write_config(tmp_path, host), "list", "--json")
    items = json.loads(result.stdout)
    assert {i["address"] for i in items} == expected
    assert all(tuple(i) == KEYS for i in items)
    assert all(len(i["vendor_id"]) == 4 and len(i["device_id"]) == 4 for i in items)


def test_vfctl_list_exit_status_and_stderr_name_the_broken_pf(tmp_path: Path) -> None:
    ok = vfctl(write_config(tmp_path, "example"), "list")
    assert ok.returncode == 0 and ok.stderr == ""
    assert ok.stdout.splitlines()[0].startswith("ADDRESS")
    broken = vfctl(write_config(tmp_path, "noiommu"), "list", "--json")
    assert broken.returncode == 1
    assert broken.stderr.splitlines() == [
        "vfctl: PF 'eth9' does not exist on this host (no /sys/class/net/eth9); "
        "fix sriov_nics/ovs_offload_nics in the configuration or bring the NIC up"]
    assert len(json.loads(broken.stdout)) == 3  # the VFs that exist are still listed


def test_vfctl_list_filters(tmp_path: Path) -> None:
    pools = {"x700": {"pfs": ["ens1f0"]}}
    result = vfctl(write_config(tmp_path, "intel", sriov_nics=["enp1s0f0", "ens1f0", "ens2f0"], pools=pools),
                   "list", "--json", "--pool", "x700", "--free")
    assert result.returncode == 0
    assert [i["address"] for i in json.loads(result.stdout)] == ["0000:81:02.0", "0000:81:02.1"]


def test_vfctl_list_shows_ledger_leases(tmp_path: Path) -> None:
    from vfplugin.ledger import Ledger, Want

    config = write_config(tmp_path, "example")
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        ledger.claim("6f0c1a9e-1111-4222-8333-944455556666", "web1",
                     [Want("0000:3b:00.3", "net0", "52:54:00:12:34:56", 100)])
    items = {i["address"]: i for i in json.loads(vfctl(config, "list", "--json").stdout)}
    assert (items["0000:3b:00.3"]["state"], items["0000:3b:00.3"]["domain"]) == ("active", "web1")
    assert (items["0000:3b:00.3"]["mac"], items["0000:3b:00.3"]["vlan"]) == ("52:54:00:12:34:56", 100)
    free = json.loads(vfctl(config, "list", "--json", "--free").stdout)
    assert "0000:3b:00.3" not in {i["address"] for i in free} and len(free) == 7


def test_vfctl_list_names_the_requests_vfplugind_could_not_satisfy_on_stderr(tmp_path: Path) -> None:
    from vfplugin.ledger import Ledger

    config = write_config(tmp_path, "example")
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        ledger.journal("materialize", "failed", domain_uuid="u-a", domain_name="web1", detail="pool fast: no free VF")
        ledger.journal("materialize", "failed", domain_uuid="u-b", domain_name="db1", detail="pool fast: no free VF")
        ledger.journal("materialize", "ok", domain_uuid="u-b", domain_name="db1", detail="net0 -> 0000:0a:10.0")
    for argv in (("list",), ("list", "--json"), ("list", "--tree")):
        result = vfctl(config, *argv)
        assert result.returncode == 0
        assert result.stderr.splitlines() == [
            "vfctl: domain web1 waits for a VF: pool fast: no free VF (vfctl doctor, vfctl history --domain web1)"]
    assert len(json.loads(vfctl(config, "list", "--json").stdout)) == 8  # the array is what it was


def test_vfctl_list_without_a_ledger_file_creates_none(tmp_path: Path) -> None:
    config = write_config(tmp_path, "example")
    assert vfctl(config, "list", "--json").returncode == 0
    assert not (tmp_path / "ledger.sqlite3").exists()


def test_vfctl_list_json_imports_no_heavy_module(tmp_path: Path) -> None:
    code = (
        "import sys, io, contextlib\n"
        "from vfplugin.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['--config', {str(write_config(tmp_path, 'example'))!r}, 'list', '--json']) == 0\n"
        "print(sorted(m for m in ('lxml', 'libvirt', 'pyroute2', 'sqlite3') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            cwd=ROOT)
    assert result.stdout.strip() == "[]", result.stderr
