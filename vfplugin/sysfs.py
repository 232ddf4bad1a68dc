"""PFs, VFs and switchdev representors as the kernel shows them in sysfs, under a root that tests can move.

Every path is under ``root`` (``/`` on a host, a fixture directory containing ``sys/`` in tests) and is
reached the way the kernel lays it out: ``sys/class/net/<pf>/device`` -> the PF's PCI directory, its
``virtfnN`` links -> the VFs, each VF's ``physfn``, ``iommu_group`` and ``driver`` links, ``net/<ifname>``
while a host driver holds the VF. Reads are limited to what a caller asks for, and a missing or unreadable
file is a value (None) or a one-line HostError, never a traceback. The only write is ``set_num_vfs``.
This module must never import a third-party package or run a command: it is on the hook's fast path.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

from .addresses import PciAddress
from .errors import HostError, InvalidValue, PfNotFound, PfNotPci, PfNotSriov, VfCountRefused
from .record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING would import typing: the hook avoids it (bench_hook)
if TYPE_CHECKING:
    from _typeshed import StrPath

# Representor names (phys_port_name) the kernel uses for a VF's representor, as os-vif
# (vif_plug_ovs/linux_net.py) and libvirt (virnetdevhostdev.c) accept them: "pf0vf3" (mlx5, ice, ...),
# with a controller prefix "c1pf0vf3" on multi-host/SmartNIC setups, "vf3@pf0", and the bare "3" of older
# mlx5 kernels.
_REPRESENTOR_RES = (
    r"^(?:c\d+)?pf(?P<pf>\d+)vf(?P<vf>\d+)$",
    r"^vf(?P<vf>\d+)@pf(?P<pf>\d+)$",
    r"^(?P<vf>\d+)$",
)


def parse_representor_name(phys_port_name: str) -> tuple[int | None, int] | None:
    """``(pf number or None, vf index)`` if ``phys_port_name`` names a VF representor, else None ("p0")."""
    import re  # here: only switchdev hosts get this far, and the hook's start/stop path avoids re (3 ms)

    for pattern in _REPRESENTOR_RES:
        match = re.match(pattern, phys_port_name.strip())
        if match:
            pf = match.groupdict().get("pf")
            return (int(pf) if pf is not None else None, int(match.group("vf")))
    return None


class VF(Record):
    """A virtual function as sysfs shows it."""

    address: PciAddress
    pf: str
    pf_address: PciAddress
    vf_index: int
    vendor_id: str  # 4 lowercase hex digits
    device_id: str
    numa_node: int | None
    iommu_group: int | None
    driver: str | None  # a host driver (igbvf, iavf, mlx5_core) or vfio-pci
    netdev: str | None  # while bound to a host driver
    representor: str | None  # switchdev mode only


class PF(Record):
    """A physical function with SR-IOV, and its VFs."""

    name: str
    address: PciAddress
    vendor_id: str
    device_id: str
    driver: str | None
    numa_node: int | None
    total_vfs: int
    num_vfs: int
    switch_id: str | None  # phys_switch_id: set in switchdev mode (and on some NICs always)
    vfs: tuple[VF, ...]


def _read(path: str) -> str | None:
    """A sysfs attribute's text, or None when it is missing or unreadable (e.g. EOPNOTSUPP in legacy mode)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 4096).decode("ascii", "replace").strip()
    except OSError:
        return None
    finally:
        os.close(fd)


def _read_int(path: str) -> int | None:
    text = _read(path)
    try:
        return int(text, 0) if text else None
    except ValueError:
        return None


def _read_id(path: str) -> str:
    """``vendor``/``device`` files hold ``0x15b3``; return ``15b3`` (``????`` if unreadable)."""
    text = (_read(path) or "").lower()
    text = text[2:] if text.startswith("0x") else text
    return text.zfill(4) if text and all(c in "0123456789abcdef" for c in text) else "????"


def _link_name(path: str) -> str | None:
    """The last component of a symlink's target (driver name, group number, PCI address), or None."""
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


def _link_target(link: str) -> str | None:
    """Where a relative link inside a real (symlink-free) directory points, resolved lexically.

    The kernel's ``virtfnN``/``physfn`` links are ``../<address>`` next to a directory that realpath()
    already resolved, so joining and normalising gives the real path without a realpath() per VF.
    """
    try:
        target = os.readlink(link)
    except OSError:
        return None
    if target.startswith("../") and "/" not in target[3:]:  # the kernel's form: a sibling of the link's dir
        return link.rsplit("/", 2)[0] + "/" + target[3:]
    return os.path.normpath(os.path.join(os.path.dirname(link), target))


def _numa(device: str) -> int | None:
    node = _read_int(f"{device}/numa_node")
    return node if node is not None and node >= 0 else None  # the kernel writes -1 for "no NUMA"


def _address(name: str | None) -> PciAddress | None:
    if not name:
        return None
    try:
        return PciAddress.parse(name)
    except InvalidValue:
        return None


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def parse_cpulist(text: str) -> list[int]:
    """The kernel's cpulist format, ``0-3,8,10-11``."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        try:
            cpus.extend(range(int(low), int(high or low) + 1))
        except ValueError:
            continue
    return cpus


class Sysfs:
    """Read-mostly view of one host's sysfs. ``root`` contains ``sys/`` (and, for doctor, ``proc/``)."""

    def __init__(self, root: StrPath = "/") -> None:
        # String paths, no pathlib: importing it costs the hook more than the reads (and so on 1,000 VFs).
        self.root = os.fspath(root)
        self.sys = os.path.join(self.root, "sys")

    def _netdevs(self) -> dict[str, list[str]]:
        """PCI address -> its netdevs, from one pass over ``class/net`` (one readlink per netdev).

        Cheaper than listing each VF's ``net/`` directory when a host has hundreds of VFs; read afresh by
        every ``pf()``/``pfs()`` call, so a Sysfs object never serves stale names.
        """
        found: dict[str, list[str]] = {}
        base = f"{self.sys}/class/net"
        for ifname in _listdir(base):
            try:
                parts = os.readlink(f"{base}/{ifname}").split("/")
            except OSError:
                continue
            # ../../devices/pci0000:00/0000:00:03.0/0000:0a:10.0/net/enp10s16 -> 0000:0a:10.0
            if len(parts) >= 3 and parts[-2] == "net":
                found.setdefault(parts[-3], []).append(ifname)
        return found

    # --- PFs ------------------------------------------------------------------------------------------------

    def _pf_dir(self, name: str) -> tuple[str, PciAddress]:
        netdev = f"{self.sys}/class/net/{name}"
        if not os.path.lexists(netdev):
            raise PfNotFound(pf=name, path=f"/sys/class/net/{name}")
        device = f"{netdev}/device"
        real = os.path.realpath(device) if os.path.islink(device) else ""
        address = _address(os.path.basename(real))
        if address is None:  # a bridge, a bond, a veth: no PCI function behind it
            raise PfNotPci(pf=name)
        return real, address

    def pf(self, name: str) -> PF:
        """The PF behind netdev ``name`` and its VFs. PfNotFound / PfNotSriov; 0 VFs is a PF with vfs=()."""
        return self._pf(name, self._netdevs())

    def pfs(self, names: Sequence[str]) -> list[PF | HostError]:
        """``pf()`` for each name, in order, with one pass over ``class/net`` for all of them; a PF that
        cannot be read is its HostError in the list, so one broken PF does not hide the others."""
        netdevs = self._netdevs()
        out: list[PF | HostError] = []
        for name in names:
            try:
                out.append(self._pf(name, netdevs))
            except HostError as e:
                out.append(e)
        return out

    def _pf(self, name: str, netdevs: dict[str, list[str]]) -> PF:
        pf_dir, address = self._pf_dir(name)
        total = _read_int(f"{pf_dir}/sriov_totalvfs")
        if total is None or total <= 0:
            raise PfNotSriov(pf=name, address=str(address))
        switch_id = _read(f"{self.sys}/class/net/{name}/phys_switch_id") or None
        representors = self._representors(pf_dir, address, switch_id) if switch_id else {}
        vendor_id = _read_id(f"{pf_dir}/vendor")
        numa_node = _numa(pf_dir)
        # Every VF of a PF has the PF's vendor, the device id in sriov_vf_device and the PF's NUMA node (the
        # kernel gives a VF its PF's node, drivers/pci/iov.c), so they are read once, not once per VF.
        vf_device = _read_id(f"{pf_dir}/sriov_vf_device")
        vfs = []
        for entry in _listdir(pf_dir):
            index = _virtfn_index(entry)
            if index is None:
                continue
            vf_dir = _link_target(f"{pf_dir}/{entry}")
            vf_name = os.path.basename(vf_dir) if vf_dir else ""
            vf_address = _address(vf_name)
            if vf_dir is None or vf_address is None:
                continue
            vf_netdevs = netdevs.get(vf_name)
            vfs.append(VF(
                address=vf_address,
                pf=name,
                pf_address=address,
                vf_index=index,
                vendor_id=vendor_id,
                device_id=vf_device if vf_device != "????" else _read_id(f"{vf_dir}/device"),
                numa_node=numa_node,
                iommu_group=_read_int_name(f"{vf_dir}/iommu_group"),
                driver=_link_name(f"{vf_dir}/driver"),
                netdev=sorted(vf_netdevs)[0] if vf_netdevs else None,
                representor=representors.get(index),
            ))
        vfs.sort(key=lambda v: v.vf_index)
        return PF(
            name=name,
            address=address,
            vendor_id=vendor_id,
            device_id=_read_id(f"{pf_dir}/device"),
            driver=_link_name(f"{pf_dir}/driver"),
            numa_node=numa_node,
            total_vfs=total,
            num_vfs=_read_int(f"{pf_dir}/sriov_numvfs") or 0,
            switch_id=switch_id,
            vfs=tuple(vfs),
        )

    def _representors(self, pf_dir: str, pf_address: PciAddress, switch_id: str) -> dict[int, str]:
        """VF index -> representor: netdevs with the PF's phys_switch_id and a ``pf<N>vf<M>`` port name.

        The kernel (mlx5, ice) registers representors as children of the PF's PCI device, so the PF's own
        ``net/`` directory is looked at first; only if it holds none is all of ``class/net`` scanned.
        """
        found = self._representors_in(f"{pf_dir}/net", pf_address, switch_id)
        if not found:
            found = self._representors_in(f"{self.sys}/class/net", pf_address, switch_id)
        return found

    @staticmethod
    def _representors_in(net_dir: str, pf_address: PciAddress, switch_id: str) -> dict[int, str]:
        found: dict[int, str] = {}
        for ifname in _listdir(net_dir):
            port_name = _read(f"{net_dir}/{ifname}/phys_port_name")
            parsed = parse_representor_name(port_name) if port_name else None
            if parsed is None or _read(f"{net_dir}/{ifname}/phys_switch_id") != switch_id:
                continue
            pf_number, vf_index = parsed
            # "pf1vf0" belongs to PCI function 1 when two PFs share a switch id (os-vif does the same check).
            if pf_number is not None and pf_number != pf_address.function:
                continue
            found.setdefault(vf_index, ifname)
        return found

    # --- VFs ------------------------------------------------------------------------------------------------

    @staticmethod
    def _vf(
        vf_dir: str, address: PciAddress, pf: str, pf_address: PciAddress, index: int,
        representor: str | None,
    ) -> VF:
        netdevs = _listdir(f"{vf_dir}/net")
        return VF(
            address=address,
            pf=pf,
            pf_address=pf_address,
            vf_index=index,
            vendor_id=_read_id(f"{vf_dir}/vendor"),
            device_id=_read_id(f"{vf_dir}/device"),
            numa_node=_numa(vf_dir),
            iommu_group=_read_int_name(f"{vf_dir}/iommu_group"),
            driver=_link_name(f"{vf_dir}/driver"),
            netdev=netdevs[0] if netdevs else None,
            representor=representor,
        )

    @staticmethod
    def _pf_netdev(pf_dir: str) -> str | None:
        """The PF's own netdev: in switchdev mode its ``net/`` also holds the representors: skip those."""
        for name in _listdir(f"{pf_dir}/net"):
            port_name = _read(f"{pf_dir}/net/{name}/phys_port_name")
            if not port_name or parse_representor_name(port_name) is None:
                return name
        return None

    def vf(self, address: PciAddress) -> VF | None:
        """The VF at ``address`` (with its PF), or None if there is no such device or it is not a VF."""
        device = f"{self.sys}/bus/pci/devices/{address}"
        physfn = f"{device}/physfn"
        pf_address = _address(_link_name(physfn))
        if pf_address is None:
            return None
        pf_dir = os.path.realpath(physfn)
        index = self._vf_index(pf_dir, address)
        if index is None:
            return None
        pf = self._pf_netdev(pf_dir)
        representor = None
        switch_id = _read(f"{pf_dir}/net/{pf}/phys_switch_id") if pf else None
        if switch_id:
            representor = self._representors(pf_dir, pf_address, switch_id).get(index)
        return self._vf(os.path.realpath(device), address, pf or "", pf_address, index, representor)

    @staticmethod
    def _vf_index(pf_dir: str, address: PciAddress) -> int | None:
        wanted = str(address)
        for entry in _listdir(pf_dir):
            index = _virtfn_index(entry)
            if index is not None and _link_name(f"{pf_dir}/{entry}") == wanted:
                return index
        return None

    def locate(self, address: PciAddress) -> tuple[str, int] | None:
        """(PF netdev, VF index) of VF ``address``, or None: what plan.holdings needs to know of a hostdev."""
        vf = self.vf(address)
        return (vf.pf, vf.vf_index) if vf is not None and vf.pf else None

    # --- NUMA -----------------------------------------------------------------------------------------------

    def cpu_nodes(self) -> dict[int, int]:
        """cpu -> NUMA node, from ``sys/devices/system/node/node*/cpulist`` ({} without NUMA information)."""
        base = f"{self.sys}/devices/system/node"
        nodes: dict[int, int] = {}
        for entry in _listdir(base):
            if entry.startswith("node") and entry[4:].isdigit():
                for cpu in parse_cpulist(_read(f"{base}/{entry}/cpulist") or ""):
                    nodes[cpu] = int(entry[4:])
        return nodes

    # --- the one write ------------------------------------------------------------------------------------

    def set_num_vfs(self, pf: str, n: int) -> None:
        """Create ``n`` VFs on ``pf``. The kernel refuses to change a non-zero count directly, so go via 0."""
        info = self.pf(pf)
        if n < 0 or n > info.total_vfs:
            raise VfCountRefused(pf=pf, n=n, total=info.total_vfs)
        if n == info.num_vfs:
            return
        pf_dir, _ = self._pf_dir(pf)
        target = os.path.join(pf_dir, "sriov_numvfs")
        # https://docs.kernel.org/PCI/pci-iov-howto.html: writing a new non-zero value while VFs exist fails
        # with EBUSY; the count must be set to 0 first.
        if info.num_vfs and n:
            self._write(pf, target, 0)
        self._write(pf, target, n)

    @staticmethod
    def _write(pf: str, path: str, n: int) -> None:
        try:
            with open(path, "w", encoding="ascii") as f:
                f.write(f"{n}\n")
        except OSError as e:
            why = os.strerror(e.errno) if e.errno else str(e)
            hint = " (is a VF still assigned to a running VM?)" if e.errno == errno.EBUSY else ""
            raise HostError(problem=f"cannot write {n} to {path} for PF {pf!r}: {why}{hint}") from None


def _virtfn_index(entry: str) -> int | None:
    """N of a PF's ``virtfnN`` link (the kernel's name for its Nth VF), else None."""
    digits = entry[6:] if entry.startswith("virtfn") else ""
    return int(digits) if digits.isascii() and digits.isdigit() else None


def _read_int_name(link: str) -> int | None:
    name = _link_name(link)
    return int(name) if name and name.isdigit() else None
