"""``vfctl explain FILE``: for each nic a domain XML requests, the VFs that qualify, how they rank and why,
and the VFs dropped with the reason. Changes nothing (no reservation, no ledger file created).

It asks the allocator exactly what ``vfctl define`` would (same inventory, leases, sticky history, NUMA
nodes, adopted hostdevs); ``render`` is pure and turns the allocator's Rankings into text.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from typing import Any

from . import config as load_config
from . import host, read_domain_file

HELP = "show, for each nic FILE requests, the VFs that qualify ranked with reasons, and what was dropped"
SHOWN = 5  # candidates listed per nic without --all
ORDER = "ranking: sticky, then the domain's NUMA nodes, then fewest leases per PF, then least recently freed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="domain XML with <vfp:nic> requests")
    parser.add_argument("--all", action="store_true", help="list every candidate and every dropped VF")


def render(domain_name: str, uuid: str, numa: frozenset[int], rankings: Sequence[Any], *, full: bool = False,
           bound: Sequence[Any] = ()) -> str:
    """The explanation of ``allocator.explain``'s Rankings for one domain, as printed; ``bound``: the vf=
    requests whose VF is a hand-written hostdev of the domain (kept as it is, nothing to choose)."""
    nodes = ",".join(str(n) for n in sorted(numa)) if numa else "none (no <numatune> or <vcpu cpuset>)"
    lines = [f"domain {domain_name} (uuid {uuid or 'not set yet'}), NUMA nodes: {nodes}", ORDER]
    for nic in bound:
        lines += ["", f"nic {nic.id} ({nic.describe()}) -> {nic.value} (the hand-written hostdev already in the "
                      "domain: kept, nothing to choose)"]
    for r in rankings:
        lines.append("")
        head = f"nic {r.nic.id} ({r.nic.describe()})"
        if r.error is not None:
            lines.append(f"{head}: no VF: {r.error.kwargs['why']}")
        else:
            lines.append(f"{head} -> {r.ranked[0].vf.address}")
        if r.ranked:
            lines.append("  candidates, best first:")
            shown = r.ranked if full else r.ranked[:SHOWN]
            for n, c in enumerate(shown, 1):
                vf = c.vf
                node = "-" if vf.numa_node is None else vf.numa_node
                why = "; ".join(c.reasons)
                lines.append(f"    {n}. {vf.address}  {vf.pf} vf{vf.vf_index}  node {node}  {why}")
            if len(r.ranked) > len(shown):
                lines.append(f"    ... and {len(r.ranked) - len(shown)} more (--all lists them)")
        if r.dropped:
            lines.append("  dropped:")
            # VFs outside the selector are many and dull: counted by reason unless --all
            outside = Counter(why for step, _, why in r.dropped if step == "selector")
            for step, address, why in r.dropped:
                if step != "selector" or full:
                    lines.append(f"    {address}  {step}: {why}")
            if not full:
                for why, count in sorted(outside.items()):
                    lines.append(f"    {count} VF{'s' if count != 1 else ''}  selector: {why}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..allocator import DomainContext, explain
    from ..rewrite import inputs, numa_nodes

    cfg = load_config(args)
    domain = read_domain_file(args.file)
    nics = domain.requests()
    if not nics:
        print(f"{args.file}: domain {domain.name} requests no VF (no <vfp:nic> in urn:vfplugin:1 metadata)")
        return 0
    sysfs, inventory = host(cfg)
    for problem in inventory.problems:
        print(f"vfctl: {problem}")
    uuid = domain.uuid or ""
    leases: list[Any] = []
    history: dict[str, str] = {}
    released: dict[str, float] = {}
    from ..ledger import Ledger, exists

    if exists(cfg.ledger):  # no file: nothing was ever allocated
        with Ledger.open(cfg.ledger, ttl=cfg.reservation_ttl, create=False) as ledger:
            leases = ledger.leases()
            history = ledger.sticky(uuid) if uuid else {}
            released = ledger.last_released()
    # exactly what vfctl define asks the allocator (rewrite.inputs: bound vf= requests, candidates, sticky)
    given = inputs(domain, nics, inventory.vfs, history)
    numa = numa_nodes(domain, sysfs.cpu_nodes())
    context = DomainContext(uuid=uuid, name=domain.name, numa_nodes=numa)
    rankings = explain(given.nics, given.vfs, leases, context, cfg.pools, given.sticky, released) if given.nics else []
    print(render(domain.name, uuid, numa, rankings, full=args.all, bound=given.bound))
    return 1 if any(r.error is not None for r in rankings) else 0
