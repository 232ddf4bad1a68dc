"""Builds sysfs trees with the kernel's real layout: the checked-in fixture hosts and the benchmark's tree.

A tree is a directory holding ``sys/`` (and ``proc/cmdline``) laid out as Linux lays it out:
``sys/devices/pci0000:00/0000:00:03.0/0000:0a:00.0/`` PCI function directories (vendor, device, class,
numa_node, sriov_* files; ``virtfnN``, ``physfn``, ``iommu_group``, ``driver``, ``subsystem`` links;
``net/<ifname>/`` while a host driver holds the function), with ``sys/bus/pci/devices/*``,
``sys/bus/pci/drivers/<driver>/*``, ``sys/class/net/*`` and ``sys/kernel/iommu_groups/N/devices/*`` as
relative symlinks into ``sys/devices``, and ``sys/devices/system/node/nodeN/cpulist``.

Used by tests/fixtures/generate (which writes tests/fixtures/hosts/<host>/ from ``HOSTS``), by tests that
need a writable copy, and by bench/bench_list.py. Test support only: vfplugin never imports this.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class Netdev:
    name: str
    mac: str
    switch_id: str | None = None  # phys_switch_id (switchdev mode only)
    port_name: str | None = None  # phys_port_name: "p0" for an uplink, "pf0vf3" for a representor


@dataclass(frozen=True)
class Function:
    """One PCI function."""

    address: str  # 0000:0a:00.0
    vendor: str  # 8086
    device: str  # 1521
    driver: str | None = None  # bound driver, None when unbound
    numa_node: int = -1  # what the kernel writes: -1 without NUMA
    iommu_group: int | None = None  # None: the IOMMU is off
    netdevs: tuple[Netdev, ...] = ()  # only while a host (not vfio-pci) driver holds it
    pci_class: str = "0x020000"  # Ethernet controller


@dataclass
class SysfsTree:
    root: Path
    next_ifindex: int = 2  # 1 is lo

    @property
    def sys(self) -> Path:
        return self.root / "sys"

    # --- low level --------------------------------------------------------------------------------------

    def _file(self, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text if text.endswith("\n") or not text else text + "\n")

    def _link(self, link: Path, target: Path) -> None:
        """A relative symlink, as the kernel's sysfs links are."""
        link.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(link):
            link.unlink()
        os.symlink(os.path.relpath(target, link.parent), link)

    # --- building blocks ------------------------------------------------------------------------------

    def function(self, upstream: str, fn: Function) -> Path:
        """Create a PCI function under ``sys/devices/<upstream>/`` with every link that points at it."""
        device = self.sys / "devices" / upstream / fn.address
        self._file(device / "vendor", f"0x{fn.vendor}")
        self._file(device / "device", f"0x{fn.device}")
        self._file(device / "class", fn.pci_class)
        self._file(device / "numa_node", str(fn.numa_node))
        self._link(device / "subsystem", self.sys / "bus" / "pci")
        self._link(self.sys / "bus" / "pci" / "devices" / fn.address, device)
        if fn.driver:
            driver = self.sys / "bus" / "pci" / "drivers" / fn.driver
            self.driver(fn.driver)
            self._link(device / "driver", driver)
            self._link(driver / fn.address, device)
        if fn.iommu_group is not None:
            group = self.sys / "kernel" / "iommu_groups" / str(fn.iommu_group)
            self._file(group / "type", "DMA")
            self._link(group / "devices" / fn.address, device)
            self._link(device / "iommu_group", group)
        for netdev in fn.netdevs:
            net = device / "net" / netdev.name
            self._file(net / "address", netdev.mac)
            self._file(net / "ifindex", str(self.next_ifindex))
            self.next_ifindex += 1
            if netdev.switch_id is not None:
                self._file(net / "phys_switch_id", netdev.switch_id)
            if netdev.port_name is not None:
                self._file(net / "phys_port_name", netdev.port_name)
            # The kernel writes this one as ../../../<address>, not the shortest path (../..).
            net.mkdir(parents=True, exist_ok=True)
            os.symlink(f"../../../{fn.address}", net / "device")
            self._link(net / "subsystem", self.sys / "class" / "net")
            self._link(self.sys / "class" / "net" / netdev.name, net)
        return device

    def driver(self, name: str) -> Path:
        """``sys/bus/pci/drivers/<name>/`` with the control files a real driver directory has."""
        path = self.sys / "bus" / "pci" / "drivers" / name
        for control in ("bind", "unbind", "new_id", "remove_id", "uevent"):
            if not (path / control).exists():
                self._file(path / control, "")
        return path

    def pf(self, upstream: str, pf: Function, vfs: Sequence[Function] = (), total_vfs: int | None = None,
           vf_device: str | None = None) -> Path:
        """A PF and its VFs (siblings under the same upstream bridge, as the kernel places them).

        ``total_vfs`` None: a function without the SR-IOV capability (no sriov_* files at all).
        """
        device = self.function(upstream, pf)
        if total_vfs is None:
            return device
        self._file(device / "sriov_totalvfs", str(total_vfs))
        self._file(device / "sriov_numvfs", str(len(vfs)))
        self._file(device / "sriov_drivers_autoprobe", "1")
        if vf_device or vfs:
            self._file(device / "sriov_vf_device", vf_device or vfs[0].device)
        for index, vf in enumerate(vfs):
            vf_dir = self.function(upstream, vf)
            self._link(device / f"virtfn{index}", vf_dir)
            self._link(vf_dir / "physfn", device)
        return device

    def numa(self, node: int, cpulist: str) -> None:
        self._file(self.sys / "devices" / "system" / "node" / f"node{node}" / "cpulist", cpulist)

    def cmdline(self, text: str) -> None:
        self._file(self.root / "proc" / "cmdline", text)

    def iommu_groups_dir(self) -> None:
        (self.sys / "kernel" / "iommu_groups").mkdir(parents=True, exist_ok=True)


# --- the fixture hosts (tests/fixtures/README.md describes each) ----------------------------------------

# ConnectX-5 switchdev: the PF uplink and its representors share one phys_switch_id (8 bytes, hex).
CX5_SWITCH_ID = "b8cef60300a1b2c4"


def _mac(prefix: str, n: int) -> str:
    return f"{prefix}:{n >> 8 & 0xff:02x}:{n & 0xff:02x}"


def build_example(root: Path) -> None:
    """The example host: eth2 = I350 (igb, legacy), eth3 = ConnectX-5 in switchdev mode; NUMA nodes 0, 1."""
    t = SysfsTree(root)
    t.numa(0, "0-3")
    t.numa(1, "4-7")
    t.cmdline("BOOT_IMAGE=/boot/vmlinuz-6.1.0-27-amd64 root=UUID=0b3a2f4e-6d1c-4e8a-9f57-3c2d1e0f9a8b ro "
              "quiet intel_iommu=on iommu=pt")
    # An I350 port: VFs at offset 0x80, stride 4 (0a:10.0, 0a:10.4, 0a:11.0, ...), igbvf or vfio-pci.
    i350_up = "pci0000:00/0000:00:03.0"
    i350_vfs = []
    for i, (address, driver) in enumerate(
        [("0000:0a:10.0", "igbvf"), ("0000:0a:10.4", "igbvf"), ("0000:0a:11.0", "vfio-pci"),
         ("0000:0a:11.4", "vfio-pci")]
    ):
        netdevs = (Netdev(f"enp10s{16 + i // 2}f{(i % 2) * 4}" if i % 2 else f"enp10s{16 + i // 2}",
                          _mac("02:1a:2b:3c", i)),) if driver == "igbvf" else ()
        i350_vfs.append(Function(address, "8086", "1520", driver, 0, 30 + i, netdevs))
    t.pf(i350_up, Function("0000:0a:00.0", "8086", "1521", "igb", 0, 20,
                           (Netdev("eth2", "a0:36:9f:12:34:50"),)), i350_vfs, total_vfs=7)
    # ConnectX-5: VFs right after the PF (3b:00.2, 3b:00.3, ...); in switchdev mode the PF's net/ holds the
    # uplink (phys_port_name p0) and one representor per VF (pf0vfN), all with the PF's phys_switch_id.
    cx5_up = "pci0000:3a/0000:3a:00.0"
    cx5_vfs = []
    for i, driver in enumerate(["mlx5_core", "mlx5_core", "vfio-pci", "vfio-pci"]):
        netdevs = (Netdev(f"enp59s0f0v{i}", _mac("02:5b:3c:4d", i)),) if driver == "mlx5_core" else ()
        cx5_vfs.append(Function(f"0000:3b:00.{2 + i}", "15b3", "1018", driver, 1, 41 + i, netdevs))
    cx5_net = (Netdev("eth3", "b8:ce:f6:a1:b2:c4", CX5_SWITCH_ID, "p0"),) + tuple(
        Netdev(f"pf0vf{i}", _mac("6e:3f:12:00", i), CX5_SWITCH_ID, f"pf0vf{i}") for i in range(4)
    )
    t.pf(cx5_up, Function("0000:3b:00.0", "15b3", "1017", "mlx5_core", 1, 40, cx5_net), cx5_vfs, total_vfs=8)


def build_intel(root: Path) -> None:
    """Intel NICs: 82576, X710 (one port with VFs, one with sriov_numvfs 0), E810, an I210 without SR-IOV."""
    t = SysfsTree(root)
    t.numa(0, "0-7,16-23")
    t.numa(1, "8-15,24-31")
    t.cmdline("BOOT_IMAGE=/boot/vmlinuz-6.1.0-27-amd64 root=/dev/mapper/vg0-root ro intel_iommu=on iommu=pt")
    # I210: no SR-IOV capability at all (no sriov_totalvfs).
    t.pf("pci0000:00/0000:00:1c.0", Function("0000:05:00.0", "8086", "1533", "igb", 0, 12,
                                             (Netdev("eno1", "3c:ec:ef:00:11:22"),)))
    # 82576: VFs at offset 0x80, stride 2 (01:10.0, 01:10.2, ...).
    t.pf("pci0000:00/0000:00:01.0",
         Function("0000:01:00.0", "8086", "10c9", "igb", 0, 14, (Netdev("enp1s0f0", "00:1b:21:aa:bb:00"),)),
         [Function(address, "8086", "10ca", "igbvf", 0, 60 + i, (Netdev(name, _mac("02:76:00:00", i)),))
          for i, (address, name) in enumerate([("0000:01:10.0", "enp1s16"), ("0000:01:10.2", "enp1s16f2")])],
         total_vfs=7)
    # X710, two ports on NUMA node 1: VFs of port 0 start at offset 16 (81:02.0); port 1 has none created.
    x710_up = "pci0000:80/0000:80:02.0"
    t.pf(x710_up,
         Function("0000:81:00.0", "8086", "1572", "i40e", 1, 70, (Netdev("ens1f0", "3c:fd:fe:10:20:30"),)),
         [Function("0000:81:02.0", "8086", "154c", "iavf", 1, 72, (Netdev("ens1f0v0", "02:71:00:00:00:00"),)),
          Function("0000:81:02.1", "8086", "154c", "vfio-pci", 1, 73)],
         total_vfs=64)
    port1 = Function("0000:81:00.1", "8086", "1572", "i40e", 1, 71, (Netdev("ens1f1", "3c:fd:fe:10:20:31"),))
    t.pf(x710_up, port1, [], total_vfs=64, vf_device="154c")
    # E810 (ice, legacy eswitch mode): VFs 82:01.0, 82:01.1 with iavf.
    t.pf("pci0000:80/0000:80:03.0",
         Function("0000:82:00.0", "8086", "159b", "ice", 1, 80, (Netdev("ens2f0", "b4:96:91:aa:00:01"),)),
         [Function(f"0000:82:01.{i}", "8086", "1889", "iavf", 1, 82 + i,
                   (Netdev(f"ens2f0v{i}", _mac("02:81:00:00", i)),)) for i in range(2)],
         total_vfs=128)


def build_noiommu(root: Path) -> None:
    """A small machine with the IOMMU off (no intel_iommu=on, no groups), no NUMA, an 82576 and no vfio-pci.

    The same NIC QEMU's emulated ``igb`` device presents (82576, 8086:10c9, VFs 8086:10ca), as in the lab.
    """
    t = SysfsTree(root)
    t.numa(0, "0-1")
    t.cmdline("BOOT_IMAGE=/boot/vmlinuz-6.1.0-27-amd64 root=/dev/vda1 ro console=ttyS0")
    t.pf("pci0000:00/0000:00:02.0",
         Function("0000:01:00.0", "8086", "10c9", "igb", -1, None, (Netdev("eth0", "52:54:00:aa:00:01"),)),
         [Function(f"0000:01:10.{2 * i}", "8086", "10ca", "igbvf", -1, None,
                   (Netdev(f"eth{1 + i}", _mac("02:00:00:00", i)),)) for i in range(3)],
         total_vfs=7)


HOSTS: dict[str, Callable[[Path], None]] = {
    "example": build_example,
    "intel": build_intel,
    "noiommu": build_noiommu,
}


def build_bench(root: Path, pfs: int = 16, vfs_per_pf: int = 64) -> int:
    """A big host for the benchmark: ``pfs`` PFs (even: ConnectX-5 in switchdev, odd: X710) x ``vfs_per_pf``.

    Returns the number of VFs. PF names are ``bench0``..; every VF has a representor or a netdev, so discovery
    reads as much as it would on a real, busy host.
    """
    t = SysfsTree(root)
    t.numa(0, "0-15")
    t.numa(1, "16-31")
    t.cmdline("BOOT_IMAGE=/boot/vmlinuz ro intel_iommu=on iommu=pt")
    group = 100
    for p in range(pfs):
        bus = 0x10 + p
        upstream = f"pci0000:{bus - 1:02x}/0000:{bus - 1:02x}:00.0"
        cx5 = p % 2 == 0
        if cx5:
            vendor, pf_device, vf_device = "15b3", "1017", "1018"
            pf_driver = vf_driver = "mlx5_core"
        else:
            vendor, pf_device, vf_device, pf_driver, vf_driver = "8086", "1572", "154c", "i40e", "iavf"
        switch_id = f"b8cef60300{p:06x}" if cx5 else None
        vfs = []
        for i in range(vfs_per_pf):
            devfn = 2 + i  # VF routing ids follow the PF: slot = devfn // 8, function = devfn % 8
            address = f"0000:{bus:02x}:{devfn >> 3:02x}.{devfn & 7}"
            bound = vf_driver if i % 4 else "vfio-pci"
            netdevs = (Netdev(f"b{p}v{i}", _mac(f"02:{p:02x}:00:00", i)),) if bound != "vfio-pci" else ()
            vfs.append(Function(address, vendor, vf_device, bound, p % 2, group, netdevs))
            group += 1
        net = [Netdev(f"bench{p}", _mac(f"0c:{p:02x}:00:00", 0), switch_id, "p0" if cx5 else None)]
        if cx5:
            net += [Netdev(f"b{p}r{i}", _mac(f"6e:{p:02x}:00:00", i), switch_id, f"pf0vf{i}")
                    for i in range(vfs_per_pf)]
        pf = Function(f"0000:{bus:02x}:00.0", vendor, pf_device, pf_driver, p % 2, group, tuple(net))
        t.pf(upstream, pf, vfs, total_vfs=vfs_per_pf)
        group += 1
    return pfs * vfs_per_pf
