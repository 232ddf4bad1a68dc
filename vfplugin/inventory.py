"""The host's VFs as vfplugin lists and allocates them: sysfs facts + model name (pci.ids) + pool membership.

``VfInfo`` is the flat, frozen record every other part uses (``vfctl list``, the allocator, the ledger's
``vfs`` table). ``discover`` is the only function here that reads the host (through sysfs.py and pciids.py).
"""

from __future__ import annotations

from .addresses import PciAddress
from .config import Config
from .errors import HostError, PfNoVfs, VfpluginError
from .pciids import PciIds
from .record import Record
from .sysfs import Sysfs


class VfInfo(Record):
    address: PciAddress
    pf: str  # PF netdev name, as in sriov_nics
    pf_address: PciAddress
    vf_index: int
    vendor_id: str  # 4 lowercase hex digits
    device_id: str
    model: str  # pci.ids rule of DESIGN.md section 7; "vvvv:dddd" when pci.ids does not know it
    numa_node: int | None  # None when the kernel says -1
    iommu_group: int | None
    driver: str | None  # bound driver (igbvf, iavf, mlx5_core, vfio-pci) or None
    netdev: str | None  # host netdev while bound to a host driver
    representor: str | None  # switchdev representor netdev
    pools: tuple[str, ...] = ()  # configured pools that admit this VF, in configuration order

    @property
    def pool(self) -> str | None:
        return self.pools[0] if self.pools else None


class Inventory(Record):
    """Every VF of the managed PFs, plus what stopped discovery of a PF (missing, not SR-IOV, 0 VFs)."""

    vfs: tuple[VfInfo, ...] = ()
    problems: tuple[VfpluginError, ...] = ()

    def get(self, address: PciAddress | str) -> VfInfo | None:
        if isinstance(address, str):
            address = PciAddress.parse(address)
        return next((vf for vf in self.vfs if vf.address == address), None)


class PfInfo(Record):
    """A managed PF as the operator's views show it (vfctl list --tree, metrics), or why it cannot be used."""

    name: str
    problem: str | None = None  # missing, not SR-IOV capable, or 0 VFs (the HostError's line)
    address: str = ""  # "" when the PF could not be read at all
    model: str = ""  # the PF's own model name (pci.ids)
    driver: str = ""
    numa_node: int | None = None
    total_vfs: int = 0  # sriov_totalvfs
    num_vfs: int = 0  # sriov_numvfs


def discover(config: Config, sysfs: Sysfs | None = None, pciids: PciIds | None = None) -> Inventory:
    """Read the VFs of every PF in ``config.managed_pfs``; a PF that cannot be read becomes a problem and
    discovery of the others goes on."""
    return survey(config, sysfs, pciids)[1]


def survey(
    config: Config, sysfs: Sysfs | None = None, pciids: PciIds | None = None
) -> tuple[tuple[PfInfo, ...], Inventory]:
    """``discover``, plus one PfInfo per configured PF (in configuration order) from the same reads."""
    sysfs = sysfs or Sysfs(config.sysfs_root)
    pciids = pciids or PciIds()
    vfs: list[VfInfo] = []
    problems: list[VfpluginError] = []
    pfs: list[PfInfo] = []
    for pf in sysfs.pfs(config.managed_pfs):
        if isinstance(pf, HostError):
            problems.append(pf)
            pfs.append(PfInfo(name=str(pf.kwargs.get("pf", "?")), problem=str(pf)))
            continue
        no_vfs = None if pf.vfs else PfNoVfs(pf=pf.name, address=str(pf.address), total=pf.total_vfs)
        pfs.append(PfInfo(
            name=pf.name, problem=None if no_vfs is None else str(no_vfs), address=str(pf.address),
            model=pciids.model(pf.vendor_id, pf.device_id), driver=pf.driver or "", numa_node=pf.numa_node,
            total_vfs=pf.total_vfs, num_vfs=pf.num_vfs,
        ))
        if no_vfs is not None:
            problems.append(no_vfs)
            continue
        for vf in pf.vfs:
            model = pciids.model(vf.vendor_id, vf.device_id)
            vfs.append(
                VfInfo(
                    address=vf.address,
                    pf=vf.pf,
                    pf_address=vf.pf_address,
                    vf_index=vf.vf_index,
                    vendor_id=vf.vendor_id,
                    device_id=vf.device_id,
                    model=model,
                    numa_node=vf.numa_node,
                    iommu_group=vf.iommu_group,
                    driver=vf.driver,
                    netdev=vf.netdev,
                    representor=vf.representor,
                    pools=config.pools_of(vf.pf, model),
                )
            )
    return tuple(pfs), Inventory(tuple(vfs), tuple(problems))
