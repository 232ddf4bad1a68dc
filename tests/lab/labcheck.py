"""The lab scenario's eyes: small read-only probes that print facts and exit 1 when an expectation fails.

Run inside the lab host by tests/lab/scenario. Each subcommand reads one source of truth, independently of
vfplugin's own code paths where it can (domain XML through lxml, VF settings through pyroute2 from the PF,
``vfctl list --json`` as a user would read it); only ``leases`` goes through vfplugin's ledger API, the
contract the rest of vfplugin uses. Standard library + lxml + pyroute2 (Debian's), Python 3.9+.

    labcheck.py render TEMPLATE NAME=VALUE...        a domain template with ${NAME} filled in (all required)
    labcheck.py nics                                  domain XML on stdin -> "alias address mac vlan" lines
    labcheck.py vf PF INDEX [KEY=VALUE...]            VF settings read through the PF (pyroute2), checked
    labcheck.py list [--count N] [--model M] [--driver D] [--held VF=DOMAIN...]
                                                      `vfctl list --json` on stdin: one line per VF, checked
    labcheck.py leases LEDGER [--none] [VF=DOMAIN[:STATE]|VF=-...]
                                                      leases from the ledger, checked ("-": no lease)
    labcheck.py history [--domain D] [--vf VF] [--action A] [--outcome O]
                                                      `vfctl history --json` on stdin: has such an event
"""

from __future__ import annotations

import argparse
import json
import string
import sys
from pathlib import Path
from typing import Any

failures: list[str] = []


def expect(ok: bool, what: str) -> None:
    print(("  ok: " if ok else "  NOT OK: ") + what)
    if not ok:
        failures.append(what)


def cmd_render(args: argparse.Namespace) -> None:
    values = dict(kv.split("=", 1) for kv in args.values)
    text = Path(args.template).read_text(encoding="utf-8")
    sys.stdout.write(string.Template(text).substitute(values))  # KeyError names a missing value


def parse_xml(data: bytes) -> Any:
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.fromstring(data, parser)


def pci_address(address: Any) -> str:
    def attr(name: str, width: int) -> str:
        return f"{int(address.get(name, '0'), 0):0{width}x}"

    return f"{attr('domain', 4)}:{attr('bus', 2)}:{attr('slot', 2)}.{attr('function', 1)}"


def cmd_nics(args: argparse.Namespace) -> None:
    """Every PCI device passed through: <interface type='hostdev'> and <hostdev type='pci'>."""
    root = parse_xml(sys.stdin.buffer.read())
    for node in root.xpath("devices/interface[@type='hostdev'] | devices/hostdev[@type='pci']"):
        address = node.find("source/address")
        if address is None:
            continue
        alias = node.find("alias")
        mac = node.find("mac")
        tag = node.find("vlan/tag")
        print(
            alias.get("name") if alias is not None else "-",
            pci_address(address),
            mac.get("address") if mac is not None else "-",
            tag.get("id") if tag is not None else "-",
        )


def vf_state(pf: str, index: int) -> dict[str, Any]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        links = ipr.link_lookup(ifname=pf)
        if not links:
            raise SystemExit(f"labcheck: no netdev {pf}")
        link = ipr.get_links(links[0], ext_mask=1)[0]  # RTEXT_FILTER_VF: include IFLA_VFINFO_LIST
    vfs = link.get_attr("IFLA_VFINFO_LIST")
    for info in vfs.get_attrs("IFLA_VF_INFO") if vfs else ():
        if info.get_attr("IFLA_VF_MAC")["vf"] != index:
            continue
        rate = info.get_attr("IFLA_VF_RATE") or {}
        return {
            "mac": info.get_attr("IFLA_VF_MAC")["mac"],
            "vlan": info.get_attr("IFLA_VF_VLAN")["vlan"],
            "spoofchk": info.get_attr("IFLA_VF_SPOOFCHK")["spoofchk"],
            "trust": info.get_attr("IFLA_VF_TRUST")["trust"],
            "max_tx_rate": rate.get("max_tx_rate", 0),
            "min_tx_rate": rate.get("min_tx_rate", 0),
        }
    raise SystemExit(f"labcheck: PF {pf} reports no VF {index}")


def cmd_vf(args: argparse.Namespace) -> None:
    state = vf_state(args.pf, args.index)
    print(f"pyroute2 {args.pf} vf {args.index}: " + " ".join(f"{k}={v}" for k, v in state.items()))
    for kv in args.expect:
        key, want = kv.split("=", 1)
        got = str(state[key])
        what = f"pyroute2: vf {args.index} of {args.pf} has {key}={want} (got {got})"
        expect(got.lower() == want.lower(), what)


def vf_entries(doc: Any) -> list[dict[str, Any]]:
    if isinstance(doc, dict):
        doc = doc.get("vfs", [])
    return [e for e in doc if isinstance(e, dict)]


def cmd_list(args: argparse.Namespace) -> None:
    vfs = vf_entries(json.load(sys.stdin))
    for e in vfs:
        print("  " + " ".join(f"{k}={e.get(k)}" for k in ("address", "pf", "model", "iommu_group", "driver")))
    if args.count is not None:
        expect(len(vfs) == args.count, f"vfctl list shows {args.count} VFs (got {len(vfs)})")
    if args.model:
        odd = [e.get("address") for e in vfs if e.get("model") != args.model]
        expect(not odd, f"every VF has model {args.model!r}" + (f" (not: {odd})" if odd else ""))
    if args.driver:
        odd = [e.get("address") for e in vfs if e.get("driver") != args.driver]
        expect(not odd, f"every VF is bound to {args.driver}" + (f" (not: {odd})" if odd else ""))
    for kv in args.held:
        vf, domain = kv.split("=", 1)
        entry = next((e for e in vfs if e.get("address") == vf), {})
        got = f"{entry.get('domain')}:{entry.get('state')}"
        expect(got == f"{domain}:active", f"vfctl list shows {vf} active for {domain} (got {got})")
    if args.held:
        return
    groups = [e.get("iommu_group") for e in vfs]
    expect(all(isinstance(g, int) for g in groups), "every VF has an IOMMU group")
    expect(len(set(groups)) == len(groups), "each VF sits in its own IOMMU group")


def cmd_leases(args: argparse.Namespace) -> None:
    from vfplugin.ledger import Ledger  # the contract every part of vfplugin uses

    with Ledger.open(Path(args.ledger)) as ledger:
        leases = {lease.vf: lease for lease in ledger.leases()}
    for lease in leases.values():
        print(f"  lease {lease.vf} {lease.domain_name} nic={lease.nic_id} state={lease.state}"
              f" stale={lease.stale}")
    if args.none:
        expect(not leases, f"the ledger holds no lease ({len(leases)} held)")
    for kv in args.expect:
        vf, want = kv.split("=", 1)
        lease: Any | None = leases.get(vf)
        if want == "-":
            expect(lease is None, f"no lease on {vf} (held by {lease.domain_name if lease else '-'})")
        else:
            domain, _, state = want.partition(":")
            held = lease is not None and lease.domain_name == domain and (not state or lease.state == state)
            got = f"{lease.domain_name}:{lease.state}" if lease else "no lease"
            expect(held, f"{vf} leased to {domain}{':' + state if state else ''} (got {got})")


def cmd_history(args: argparse.Namespace) -> None:
    doc = json.load(sys.stdin)
    events = doc.get("events", []) if isinstance(doc, dict) else doc
    for e in events:
        print("  " + " ".join(str(e.get(k)) for k in ("time", "domain", "vf", "action", "outcome", "detail")))
    shown = [
        e for e in events
        if (not args.domain or args.domain in (e.get("domain"), e.get("domain_uuid")))
        and (not args.vf or e.get("vf") == args.vf)
        and (not args.action or e.get("action") == args.action)
        and (not args.outcome or e.get("outcome") == args.outcome)
    ]
    if args.action:
        whose = f" for {args.domain}" if args.domain else ""
        expect(bool(shown), f"history has a {args.action}/{args.outcome or '*'} event{whose}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="labcheck.py")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("render")
    p.add_argument("template")
    p.add_argument("values", nargs="*")
    p.set_defaults(run=cmd_render)
    sub.add_parser("nics").set_defaults(run=cmd_nics)
    p = sub.add_parser("vf")
    p.add_argument("pf")
    p.add_argument("index", type=int)
    p.add_argument("expect", nargs="*")
    p.set_defaults(run=cmd_vf)
    p = sub.add_parser("list")
    p.add_argument("--count", type=int)
    p.add_argument("--model")
    p.add_argument("--driver")
    p.add_argument("--held", action="append", default=[])
    p.set_defaults(run=cmd_list)
    p = sub.add_parser("leases")
    p.add_argument("ledger")
    p.add_argument("--none", action="store_true")
    p.add_argument("expect", nargs="*")
    p.set_defaults(run=cmd_leases)
    p = sub.add_parser("history")
    p.add_argument("--domain")
    p.add_argument("--vf")
    p.add_argument("--action")
    p.add_argument("--outcome")
    p.set_defaults(run=cmd_history)
    args = parser.parse_args()
    args.run(args)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
