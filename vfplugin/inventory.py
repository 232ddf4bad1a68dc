"""The host's VFs as vfplugin lists and allocates them: sysfs facts + model name (pci.ids) + pool membership.

``VfInfo`` is the flat, frozen record every other part uses (``vfctl list``, the allocator, the ledger's
``vfs`` table). ``discover`` is the only function here that reads the host (through sysfs.py and pciids.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .addresses import PciAddress


@dataclass(frozen=True)
class VfInfo:
    address: PciAddress
    pf: str  # PF netdev name, as in sriov_nics
    pf_address: PciAddress
    vf_index: int
    vendor_id: str  # 4 lowercase hex digits
    device_id: str
    model: str  # pci.ids rule of DESIGN.md section 7; "vvvv:dddd" when pci.ids does not know it
    numa_node: Optional[int]  # None when the kernel says -1
    iommu_group: Optional[int]
    driver: Optional[str]  # bound driver (igbvf, iavf, mlx5_core, vfio-pci) or None
    netdev: Optional[str]  # host netdev while bound to a host driver
    representor: Optional[str]  # switchdev representor netdev
    pools: tuple[str, ...] = ()  # configured pools that admit this VF, in configuration order

    @property
    def pool(self) -> Optional[str]:
        return self.pools[0] if self.pools else None
