"""``vfctl attach DOMAIN``: add a VF to a domain (hot-plug with --live); metadata and ledger together."""

from __future__ import annotations

import argparse

from . import config, host, network_ports, open_ledger

HELP = (
    "add a VF to a domain: request in the metadata, VF chosen and held, interface attached (--live/--config)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("domain", help="domain name")
    selector = parser.add_mutually_exclusive_group(required=True)
    selector.add_argument("--pool", help="a pool of the configuration")
    selector.add_argument("--model", help="a model name as `vfctl list` shows it")
    selector.add_argument("--pf", help="a PF netdev name")
    selector.add_argument("--vf", help="a VF PCI address, e.g. 0000:0a:00.2")
    parser.add_argument("--nic", help="nic id (default: the first free netN)")
    parser.add_argument("--vlan", help="VLAN id 1-4094")
    parser.add_argument("--mac", help="MAC address (default: generated from mac_prefix)")
    parser.add_argument("--trust", choices=("on", "off"))
    parser.add_argument("--spoofchk", choices=("on", "off"))
    parser.add_argument("--max-tx-rate", dest="max_tx_rate", help="Mbit/s")
    parser.add_argument("--live", action="store_true", help="hot-plug into the running domain")
    parser.add_argument(
        "--config", dest="persistent", action="store_true", help="change the persistent definition"
    )


def flags(running: bool, live: bool, persistent: bool) -> tuple[bool, bool]:
    """virsh's rule: neither flag means the current state (live if running, else the definition)."""
    from ..errors import LibvirtError

    if live and not running:
        raise LibvirtError(problem="--live needs a running domain")
    if not live and not persistent:
        return running, not running
    return live, persistent


def run(args: argparse.Namespace) -> int:
    from .. import virt
    from ..configure import configure, unconfigure
    from ..domxml import interface_xml, parse_domain
    from ..errors import VfpluginError
    from ..plan import Holding
    from ..request import metadata_fragment, parse_request
    from ..rewrite import assign, domain_uuid

    cfg = config(args)
    with virt.connect(args.connect) as conn:
        dom = virt.lookup(conn, args.domain)
        live, persistent = flags(bool(virt.call("state", dom.isActive)), args.live, args.persistent)
        domain = parse_domain(virt.xml(dom, inactive=not live), source=f"domain {args.domain}")
        other = parse_domain(virt.xml(dom, inactive=True), source=f"domain {args.domain}") if live else domain
        used = {n.id for n in domain.requests()} | {n.id for n in other.requests()}
        nic_id = args.nic or next(f"net{i}" for i in range(len(used) + 1) if f"net{i}" not in used)
        attrs = {"id": nic_id}
        for key in ("pool", "model", "pf", "vf", "vlan", "mac", "trust", "spoofchk", "max_tx_rate"):
            if getattr(args, key, None) is not None:
                attrs[key] = getattr(args, key)
        nic = parse_request(attrs)
        if nic_id in used:
            raise VfpluginError(
                detail=f"domain {args.domain!r} already has a nic {nic_id!r}; choose another --nic"
            )
        sysfs, inventory = host(cfg)
        uuid = domain_uuid(domain)
        with open_ledger(cfg) as ledger:
            ledger.record_vfs(inventory.vfs)
            choice = assign(domain, [nic], cfg, inventory.vfs, ledger, sysfs.cpu_nodes())[0]
            vf, mac = choice.vf, choice.mac
            assert mac is not None  # assign wrote it into the domain
            # Hold the VF before libvirt sees it: active for a live hot-plug, reserved for the next start.
            (ledger.claim if live else ledger.reserve)(uuid, domain.name, [choice.want])
            try:
                if live:
                    held = Holding(vf.address, vf.pf, vf.vf_index, nic, "interface", mac, nic.vlan)
                    configure(cfg, sysfs, ledger, uuid, domain.name, held)
                flag = (virt.AFFECT_LIVE if live else 0) | (virt.AFFECT_CONFIG if persistent else 0)
                virt.call(
                    f"attach to {args.domain}",
                    dom.attachDeviceFlags,
                    interface_xml(nic, vf.address, mac),
                    flag,
                )
                requests = [n for n in domain.requests() if n.id != nic.id] + [nic]
                virt.set_request_metadata(dom, metadata_fragment(requests), flag)
            except VfpluginError:
                lease = ledger.lease(str(vf.address))
                if live and lease is not None:
                    unconfigure(cfg, sysfs, lease, vf.pf)
                ledger.release(uuid, vfs=[str(vf.address)], reason="attach failed")
                raise
    network_ports(cfg, args.connect)
    where = " and ".join(w for w, on in (("live", live), ("config", persistent)) if on)
    print(f"attached {choice.describe()} to {args.domain} ({where})")
    return 0
