"""sysfs.py reads PFs, VFs and representors the way the kernel lays them out, and never tracebacks.

Most tests read the checked-in fixture hosts (tests/fixtures/README.md); the ones that need an odd layout
or a write build a tree under tmp_path with tests/sysfs_builder.py, the same code that made the fixtures.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.hosts import HOSTS, copy_host, host_root, write_config
from tests.sysfs_builder import HOSTS as BUILDERS
from tests.sysfs_builder import Function, Netdev, SysfsTree, build_bench
from vfplugin.addresses import PciAddress
from vfplugin.errors import HostError, PfNotFound, PfNotPci, PfNotSriov, VfCountRefused
from vfplugin.sysfs import Sysfs, parse_cpulist, parse_representor_name

pytestmark = pytest.mark.fixtures


def addr(text: str) -> PciAddress:
    return PciAddress.parse(text)


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root -> file content or 'link -> target' or 'dir'."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "link -> " + os.readlink(path)
            elif path.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = path.read_text()
    return out


# --- the fixtures themselves ----------------------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
def test_checked_in_tree_is_what_the_generator_writes(tmp_path: Path, host: str) -> None:
    BUILDERS[host](tmp_path / host)
    assert snapshot(tmp_path / host) == snapshot(host_root(host)), "run tests/fixtures/generate and commit"


def test_fixture_links_are_relative_and_kernel_shaped() -> None:
    sys_dir = host_root("example") / "sys"
    assert os.readlink(sys_dir / "class/net/eth3") == (
        "../../devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0/net/eth3")
    assert os.readlink(sys_dir / "bus/pci/devices/0000:0a:10.0") == (
        "../../../devices/pci0000:00/0000:00:03.0/0000:0a:10.0")
    pf = sys_dir / "devices/pci0000:00/0000:00:03.0/0000:0a:00.0"
    assert os.readlink(pf / "virtfn0") == "../0000:0a:10.0"
    assert os.readlink(pf / "driver") == "../../../../bus/pci/drivers/igb"
    assert os.readlink(pf / "iommu_group") == "../../../../kernel/iommu_groups/20"
    assert os.readlink(pf / "net/eth2/device") == "../../../0000:0a:00.0"
    vf = sys_dir / "devices/pci0000:00/0000:00:03.0/0000:0a:10.0"
    assert os.readlink(vf / "physfn") == "../0000:0a:00.0"
    assert (sys_dir / "kernel/iommu_groups/30/devices/0000:0a:10.0").resolve() == vf.resolve()
    assert (sys_dir / "bus/pci/drivers/vfio-pci/0000:0a:11.0").resolve().name == "0000:0a:11.0"


# --- PFs and VFs ---------------------------------------------------------------------------------------


def test_i350_pf_and_its_vfs() -> None:
    pf = Sysfs(host_root("example")).pf("eth2")
    assert (str(pf.address), pf.vendor_id, pf.device_id) == ("0000:0a:00.0", "8086", "1521")
    assert pf.driver == "igb"
    assert (pf.numa_node, pf.total_vfs, pf.num_vfs, pf.switch_id) == (0, 7, 4, None)
    assert [str(v.address) for v in pf.vfs] == ["0000:0a:10.0", "0000:0a:10.4", "0000:0a:11.0",
                                               "0000:0a:11.4"]
    assert [v.vf_index for v in pf.vfs] == [0, 1, 2, 3]
    assert {(v.vendor_id, v.device_id) for v in pf.vfs} == {("8086", "1520")}
    assert [v.driver for v in pf.vfs] == ["igbvf", "igbvf", "vfio-pci", "vfio-pci"]
    assert [v.netdev for v in pf.vfs] == ["enp10s16", "enp10s16f4", None, None]  # vfio-pci: no netdev
    assert [v.iommu_group for v in pf.vfs] == [30, 31, 32, 33]
    assert all(v.pf == "eth2" and v.pf_address == pf.address and v.numa_node == 0 for v in pf.vfs)
    assert all(v.representor is None for v in pf.vfs)  # legacy mode: no representors


def test_connectx5_in_switchdev_mode_has_a_representor_per_vf() -> None:
    pf = Sysfs(host_root("example")).pf("eth3")
    assert (pf.vendor_id, pf.device_id, pf.driver, pf.numa_node) == ("15b3", "1017", "mlx5_core", 1)
    assert pf.switch_id == "b8cef60300a1b2c4"
    assert [(str(v.address), v.representor) for v in pf.vfs] == [
        ("0000:3b:00.2", "pf0vf0"), ("0000:3b:00.3", "pf0vf1"),
        ("0000:3b:00.4", "pf0vf2"), ("0000:3b:00.5", "pf0vf3"),
    ]
    assert [v.netdev for v in pf.vfs] == ["enp59s0f0v0", "enp59s0f0v1", None, None]
    assert [v.iommu_group for v in pf.vfs] == [41, 42, 43, 44]


@pytest.mark.parametrize(
    "pf, ids, vf_ids, driver, numa, count",
    [
        ("enp1s0f0", ("8086", "10c9"), ("8086", "10ca"), "igb", 0, 2),
        ("ens1f0", ("8086", "1572"), ("8086", "154c"), "i40e", 1, 2),
        ("ens2f0", ("8086", "159b"), ("8086", "1889"), "ice", 1, 2),
    ],
)
def test_intel_pfs(
    pf: str, ids: tuple[str, str], vf_ids: tuple[str, str], driver: str, numa: int, count: int
) -> None:
    info = Sysfs(host_root("intel")).pf(pf)
    assert ((info.vendor_id, info.device_id), info.driver) == (ids, driver)
    assert (info.numa_node, len(info.vfs)) == (numa, count)
    assert {(v.vendor_id, v.device_id) for v in info.vfs} == {vf_ids}


def test_pf_with_zero_vfs_is_a_pf_without_vfs() -> None:
    pf = Sysfs(host_root("intel")).pf("ens1f1")
    assert (pf.total_vfs, pf.num_vfs, pf.vfs) == (64, 0, ())


def test_missing_pf_is_one_line() -> None:
    with pytest.raises(PfNotFound) as info:
        Sysfs(host_root("intel")).pf("eth7")
    assert str(info.value).startswith("PF 'eth7' does not exist on this host (no /sys/class/net/eth7)")
    assert "\n" not in str(info.value)


def test_nic_without_sriov_capability_is_one_line() -> None:
    with pytest.raises(PfNotSriov) as info:
        Sysfs(host_root("intel")).pf("eno1")
    assert str(info.value).startswith("PF 'eno1' (0000:05:00.0) has no SR-IOV capability")


def test_a_virtual_netdev_is_not_a_pf(tmp_path: Path) -> None:
    bridge = tmp_path / "sys/devices/virtual/net/br0"
    bridge.mkdir(parents=True)
    (tmp_path / "sys/class/net").mkdir(parents=True)
    os.symlink("../../devices/virtual/net/br0", tmp_path / "sys/class/net/br0")
    with pytest.raises(PfNotPci) as info:
        Sysfs(tmp_path).pf("br0")
    assert str(info.value).startswith("PF 'br0' is not a PCI device")


def test_missing_attributes_are_none_not_tracebacks(tmp_path: Path) -> None:
    root = copy_host(tmp_path, "example")
    pf_dir = root / "sys/devices/pci0000:00/0000:00:03.0/0000:0a:00.0"
    vf_dir = pf_dir.parent / "0000:0a:10.0"
    for path in (vf_dir / "driver", vf_dir / "iommu_group", vf_dir / "device", pf_dir / "numa_node",
                 pf_dir / "vendor", pf_dir / "sriov_vf_device"):
        path.unlink()
    vf = Sysfs(root).pf("eth2").vfs[0]
    assert (vf.numa_node, vf.driver, vf.iommu_group) == (None, None, None)
    assert (vf.vendor_id, vf.device_id) == ("????", "????")


def test_vf_device_id_without_sriov_vf_device_is_read_from_the_vf(tmp_path: Path) -> None:
    root = copy_host(tmp_path, "example")  # sriov_vf_device appeared in Linux 5.x; older kernels lack it
    (root / "sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0/sriov_vf_device").unlink()
    assert {v.device_id for v in Sysfs(root).pf("eth3").vfs} == {"1018"}


def test_no_numa_is_none() -> None:
    pf = Sysfs(host_root("noiommu")).pf("eth0")
    assert pf.numa_node is None and all(v.numa_node is None and v.iommu_group is None for v in pf.vfs)


def test_a_host_layout_never_seen_before(tmp_path: Path) -> None:
    assert build_bench(tmp_path, pfs=3, vfs_per_pf=5) == 15
    sysfs = Sysfs(tmp_path)
    cx5, x710 = sysfs.pf("bench0"), sysfs.pf("bench1")
    assert [v.representor for v in cx5.vfs] == [f"b0r{i}" for i in range(5)]
    assert [v.representor for v in x710.vfs] == [None] * 5
    assert str(cx5.vfs[4].address) == "0000:10:00.6" and str(x710.vfs[0].address) == "0000:11:00.2"


# --- representors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, parsed",
    [("pf0vf3", (0, 3)), ("pf1vf12", (1, 12)), ("c1pf0vf3", (0, 3)), ("vf3@pf0", (0, 3)), ("3", (None, 3)),
     ("p0", None), ("pf0", None), ("pf0vf", None), ("pf0sf1", None), ("", None)],
)
def test_representor_name_variants(name: str, parsed: object) -> None:
    assert parse_representor_name(name) == parsed


def two_port_switch(root: Path, in_pf_dir: bool = True) -> None:
    """Two PF functions sharing one switch id (as in LAG/multiport eswitch); representors pf0vf0, pf1vf0."""
    t = SysfsTree(root)
    switch = "aabbccddeeff0011"
    up = "pci0000:00/0000:00:02.0"
    for fn in (0, 1):
        reps = (Netdev(f"rep{fn}", f"6e:00:00:00:00:0{fn}", switch, f"pf{fn}vf0"),) if in_pf_dir else ()
        t.pf(up, Function(f"0000:05:00.{fn}", "15b3", "1017", "mlx5_core", 0, None,
                          (Netdev(f"ens{fn}", f"0c:00:00:00:00:0{fn}", switch, f"p{fn}"),) + reps),
             [Function(f"0000:05:0{1 + fn}.0", "15b3", "1018", "mlx5_core", 0, None)], total_vfs=4)
    if not in_pf_dir:  # representors registered under another device: only class/net finds them
        for fn in (0, 1):
            t.function("pci0000:00/0000:00:09.0", Function(f"0000:09:00.{fn}", "1af4", "1041", None, 0, None,
                                                           (Netdev(f"rep{fn}", "6e:00:00:00:01:00", switch,
                                                                   f"pf{fn}vf0"),)))


def test_representor_of_the_other_pf_function_is_not_taken(tmp_path: Path) -> None:
    two_port_switch(tmp_path)
    sysfs = Sysfs(tmp_path)
    assert sysfs.pf("ens0").vfs[0].representor == "rep0"
    assert sysfs.pf("ens1").vfs[0].representor == "rep1"


def test_representors_outside_the_pf_directory_are_found_through_class_net(tmp_path: Path) -> None:
    two_port_switch(tmp_path, in_pf_dir=False)
    assert Sysfs(tmp_path).pf("ens1").vfs[0].representor == "rep1"


# --- a single VF, the hook's fast path -------------------------------------------------------------------


def test_vf_by_address_knows_its_pf_and_representor() -> None:
    vf = Sysfs(host_root("example")).vf(addr("0000:3b:00.3"))
    assert vf is not None
    assert (vf.pf, str(vf.pf_address), vf.vf_index, vf.representor, vf.netdev) == (
        "eth3", "0000:3b:00.0", 1, "pf0vf1", "enp59s0f0v1")
    assert vf == Sysfs(host_root("example")).pf("eth3").vfs[1]


def test_vf_of_a_pf_that_is_not_a_vf_or_absent_is_none() -> None:
    sysfs = Sysfs(host_root("example"))
    assert sysfs.vf(addr("0000:0a:00.0")) is None  # the PF itself: no physfn
    assert sysfs.vf(addr("0000:77:00.1")) is None


def test_locate_names_the_pf_netdev_not_its_representors() -> None:
    sysfs = Sysfs(host_root("example"))
    assert sysfs.locate(addr("0000:3b:00.5")) == ("eth3", 3)  # switchdev: eth3's net/ also holds pf0vfN
    assert sysfs.locate(addr("0000:0a:11.4")) == ("eth2", 3)
    assert sysfs.locate(addr("0000:0a:00.0")) is None
    assert sysfs.locate(addr("0000:77:00.1")) is None


# --- NUMA ----------------------------------------------------------------------------------------------


def test_cpu_nodes() -> None:
    assert Sysfs(host_root("example")).cpu_nodes() == {0: 0, 1: 0, 2: 0, 3: 0, 4: 1, 5: 1, 6: 1, 7: 1}
    nodes = Sysfs(host_root("intel")).cpu_nodes()
    assert nodes[16] == 0 and nodes[8] == 1 and nodes[31] == 1 and len(nodes) == 32
    assert Sysfs(Path("/nonexistent")).cpu_nodes() == {}


def test_parse_cpulist() -> None:
    assert parse_cpulist("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert parse_cpulist("") == []


# --- set_num_vfs ---------------------------------------------------------------------------------------


class KernelLikeSysfs(Sysfs):
    """Writes like the kernel accepts them: a new non-zero count while VFs exist fails with EBUSY."""

    writes: list[int]

    def _write(self, pf: str, path: str, n: int) -> None:  # type: ignore[override]
        current = int(Path(path).read_text())
        self.writes.append(n)
        if current and n:
            raise HostError(problem=f"cannot write {n} to {path} for PF {pf!r}: {os.strerror(errno.EBUSY)}")
        Path(path).write_text(f"{n}\n")


@pytest.fixture
def intel_copy(tmp_path: Path) -> KernelLikeSysfs:
    sysfs = KernelLikeSysfs(copy_host(tmp_path, "intel"))
    sysfs.writes = []
    return sysfs


def numvfs(sysfs: Sysfs, pf: str) -> int:
    return int((Path(sysfs.sys) / "class/net" / pf / "device/sriov_numvfs").read_text())


def test_set_num_vfs_goes_through_zero_when_changing_a_nonzero_count(intel_copy: KernelLikeSysfs) -> None:
    intel_copy.set_num_vfs("ens1f0", 8)
    assert intel_copy.writes == [0, 8]
    assert numvfs(intel_copy, "ens1f0") == 8


def test_set_num_vfs_from_zero_writes_once(intel_copy: KernelLikeSysfs) -> None:
    intel_copy.set_num_vfs("ens1f1", 4)
    assert intel_copy.writes == [4] and numvfs(intel_copy, "ens1f1") == 4


def test_set_num_vfs_to_the_current_count_writes_nothing(intel_copy: KernelLikeSysfs) -> None:
    intel_copy.set_num_vfs("ens1f0", 2)
    assert intel_copy.writes == []


def test_set_num_vfs_refuses_more_than_total(intel_copy: KernelLikeSysfs) -> None:
    with pytest.raises(VfCountRefused) as info:
        intel_copy.set_num_vfs("enp1s0f0", 8)
    assert str(info.value) == (
        "PF 'enp1s0f0' supports 0 to 7 VFs, not 8; run 'vfctl pf set-vfs enp1s0f0 N' with N from 0 to 7")
    with pytest.raises(VfCountRefused):
        intel_copy.set_num_vfs("enp1s0f0", -1)
    assert intel_copy.writes == [] and numvfs(intel_copy, "enp1s0f0") == 2


def test_set_num_vfs_on_a_missing_or_non_sriov_pf(intel_copy: KernelLikeSysfs) -> None:
    with pytest.raises(PfNotFound):
        intel_copy.set_num_vfs("eth7", 1)
    with pytest.raises(PfNotSriov):
        intel_copy.set_num_vfs("eno1", 1)


def test_set_num_vfs_that_the_file_refuses_is_one_line(tmp_path: Path) -> None:
    root = copy_host(tmp_path, "intel")
    target = root / "sys/class/net/ens1f1/device/sriov_numvfs"
    target.unlink()
    target.mkdir()  # open(..., "w") fails with EISDIR, like a kernel write that fails
    with pytest.raises(HostError) as info:
        Sysfs(root).set_num_vfs("ens1f1", 3)
    assert "cannot write 3 to" in str(info.value) and "\n" not in str(info.value)


# --- vfctl pf set-vfs ----------------------------------------------------------------------------------


def vfctl(config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vfplugin.cli", "--config", str(config), *argv],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_vfctl_pf_set_vfs_writes_and_refuses_above_total(tmp_path: Path) -> None:
    root = copy_host(tmp_path, "intel")
    config = write_config(tmp_path, "intel", sysfs_root=root)
    done = vfctl(config, "pf", "set-vfs", "ens1f1", "8")
    assert done.returncode == 0 and done.stdout == "ens1f1: 0 -> 8 VFs (of 64)\n"
    assert numvfs(Sysfs(root), "ens1f1") == 8
    refused = vfctl(config, "pf", "set-vfs", "ens1f1", "65")
    assert refused.returncode == 1
    assert refused.stderr == "vfctl: PF 'ens1f1' supports 0 to 64 VFs, not 65; " \
        "run 'vfctl pf set-vfs ens1f1 N' with N from 0 to 64\n"


def test_vfctl_pf_set_vfs_refuses_while_a_domain_holds_a_vf(tmp_path: Path) -> None:
    from vfplugin.ledger import Ledger, Want

    root = copy_host(tmp_path, "intel")
    config = write_config(tmp_path, "intel", sysfs_root=root)
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        ledger.claim("0b7e4a52-5c1d-4a8e-9d1f-2e3c4b5a6978", "db1", [Want("0000:81:02.1", "net0")])
    refused = vfctl(config, "pf", "set-vfs", "ens1f0", "4")
    assert refused.returncode == 1
    assert "domains hold 0000:81:02.1 (db1); stop them first, or add --force" in refused.stderr
    assert numvfs(Sysfs(root), "ens1f0") == 2
    forced = vfctl(config, "pf", "set-vfs", "ens1f0", "4", "--force")
    assert forced.returncode == 0 and numvfs(Sysfs(root), "ens1f0") == 4
