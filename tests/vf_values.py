"""Hand-built VfInfo and Lease values for the allocator and ledger tests (no sysfs involved)."""

from __future__ import annotations

from vfplugin.addresses import PciAddress
from vfplugin.inventory import VfInfo
from vfplugin.ledger import Lease

I350_VF = "I350 Ethernet Controller Virtual Function"
CX5_VF = "ConnectX-5 Virtual Function"


def vf(
    pf: str, index: int, *, bus: int = 0x0A, model: str = I350_VF, numa: int | None = 0,
    driver: str | None = "igbvf", pools: tuple[str, ...] = (),
) -> VfInfo:
    """VF ``index`` of ``pf``: PF eth2 lives on bus 0x0a, eth3 on 0x0b... unless ``bus`` says otherwise."""
    address = PciAddress(0, bus, 0x10 + index // 8, index % 8)
    return VfInfo(
        address=address, pf=pf, pf_address=PciAddress(0, bus, 0, 0), vf_index=index,
        vendor_id="8086", device_id="1520", model=model, numa_node=numa, iommu_group=None,
        driver=driver, netdev=None if driver == "vfio-pci" else f"{pf}v{index}", representor=None,
        pools=pools,
    )


def pf_vfs(pf: str, count: int, **kwargs: object) -> list[VfInfo]:
    return [vf(pf, i, **kwargs) for i in range(count)]  # type: ignore[arg-type]


def lease(
    vf_address: str, holder: str, *, uuid: str | None = None, nic_id: str | None = "net0",
    state: str = "active", stale: bool = False,
) -> Lease:
    return Lease(
        vf=vf_address, domain_uuid=uuid or f"uuid-{holder}", domain_name=holder, nic_id=nic_id, mac=None,
        vlan=None, state=state, boot_id="boot", reserved_at=None, activated_at=1.0, started_at=None,
        saved=None, stale=stale,
    )
