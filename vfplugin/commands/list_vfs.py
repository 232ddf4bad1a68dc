"""``vfctl list``: every VF of the managed PFs with its facts and who holds it, as a table or JSON.

``rows`` is pure (inventory + leases in, row mappings out); ``run`` reads the host and the ledger. This path
must stay fast and light: no lxml, libvirt or pyroute2 import, and the ledger is opened only if its file
exists (no file: nothing was ever allocated, every VF is free).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from . import aligned
from . import config as load_config

HELP = "list the VFs of the managed PFs: model, NUMA node, IOMMU group, driver, lease"

# The JSON contract (DESIGN.md / issue 3): exactly these keys, in this order.
KEYS = (
    "address", "pf", "pf_address", "vf_index", "vendor_id", "device_id", "model", "numa_node", "iommu_group",
    "driver", "netdev", "representor", "pool", "state", "domain", "network", "mac", "vlan",
)
COLUMNS = (
    ("ADDRESS", "address"), ("PF", "pf"), ("VF", "vf_index"), ("MODEL", "model"), ("VENDOR:DEVICE", "ids"),
    ("NUMA", "numa_node"), ("IOMMU", "iommu_group"), ("DRIVER", "driver"), ("STATE", "state"),
    ("DOMAIN", "domain"), ("MAC", "mac"), ("VLAN", "vlan"),
)


class LeaseLike(Protocol):
    """What a row needs of a lease (vfplugin.ledger.Lease has it)."""

    @property
    def state(self) -> str: ...
    @property
    def domain_name(self) -> str: ...
    @property
    def mac(self) -> str | None: ...
    @property
    def vlan(self) -> int | None: ...


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pf", metavar="PF", help="only VFs of this PF (netdev name)")
    parser.add_argument("--model", metavar="M", help="only VFs of this model, as listed")
    parser.add_argument("--pool", metavar="P", help="only VFs this pool admits")
    parser.add_argument("--free", action="store_true", help="only VFs no domain holds")
    parser.add_argument("--json", action="store_true", help="a JSON array of objects instead of a table")
    parser.add_argument(
        "--tree", action="store_true",
        help="NUMA node -> PF -> VF -> domain (color on a terminal unless NO_COLOR is set; with --json: the "
        "same tree as one JSON object)",
    )


def rows(
    inventory: Any, leases: Mapping[str, LeaseLike], *, pf: str | None = None, model: str | None = None,
    pool: str | None = None, free: bool = False,
) -> list[dict[str, Any]]:
    """One mapping per VF with exactly ``KEYS``; ``leases``: VF address (``0000:0a:10.0``) -> its lease."""
    out = []
    for vf in inventory.vfs:
        if pf is not None and vf.pf != pf:
            continue
        if model is not None and vf.model != model:
            continue
        if pool is not None and pool not in vf.pools:
            continue
        lease = leases.get(str(vf.address))
        if free and lease is not None:
            continue
        out.append({
            "address": str(vf.address),
            "pf": vf.pf,
            "pf_address": str(vf.pf_address),
            "vf_index": vf.vf_index,
            "vendor_id": vf.vendor_id,
            "device_id": vf.device_id,
            "model": vf.model,
            "numa_node": vf.numa_node,
            "iommu_group": vf.iommu_group,
            "driver": vf.driver,
            "netdev": vf.netdev,
            "representor": vf.representor,
            "pool": vf.pool,
            "state": lease.state if lease is not None else "free",
            "domain": lease.domain_name if lease is not None else None,
            # the libvirt hostdev network the VF was taken through (its port), None for vfctl's own leases
            "network": getattr(lease, "network", None),
            "mac": lease.mac if lease is not None else None,
            "vlan": lease.vlan if lease is not None else None,
        })
    return out


def table(items: Sequence[Mapping[str, Any]]) -> str:
    """Aligned columns, ``-`` for absent values; the model column is the widest and comes last but three."""
    header = [title for title, _ in COLUMNS]
    lines = [header]
    for row in items:
        cells = []
        for _, key in COLUMNS:
            value = f"{row['vendor_id']}:{row['device_id']}" if key == "ids" else row[key]
            cells.append("-" if value is None else str(value))
        lines.append(cells)
    return aligned(lines)


def read_leases(cfg: Any) -> dict[str, LeaseLike]:
    """The ledger's live leases by VF address; {} when the ledger file does not exist yet. A stale lease
    (another boot, an expired reservation) is shown as free: the next claim takes it over."""
    return read_ledger(cfg)[0]


def read_ledger(cfg: Any, waiting: bool = False) -> tuple[dict[str, LeaseLike], list[Any]]:
    """``read_leases``, and with ``waiting`` the requests vfplugind journaled as unsatisfiable (its latest word
    on each domain is a failure), from one opening of the ledger."""
    try:
        os.lstat(cfg.ledger)
    except FileNotFoundError:
        return {}, []  # no sqlite3 import at all on this path
    except OSError:
        pass  # not os.path.exists: a ledger this user may not look at is not "all free"; Ledger.open says why
    from ..ledger import Ledger

    ledger = Ledger.open(cfg.ledger, ttl=cfg.reservation_ttl, create=False)
    try:
        leases: dict[str, LeaseLike] = {lease.vf: lease for lease in ledger.leases() if not lease.stale}
        if not waiting:
            return leases, []
        from ..startable import ACTIONS, pending

        return leases, list(pending(ledger.history(actions=ACTIONS)).values())
    finally:
        ledger.close()


def tell_waiting(events: Sequence[Any], stream: Any) -> None:
    """One line per domain whose request vfplugind could not satisfy: it has no VF until something changes."""
    for e in events:
        print(f"vfctl: domain {e.domain_name} waits for a VF: {e.detail} (vfctl doctor, vfctl history --domain "
              f"{e.domain_name})", file=stream)


def use_color(stream: Any, environ: Mapping[str, str]) -> bool:
    """Color only on a terminal, and never when NO_COLOR is set to anything (https://no-color.org)."""
    return not environ.get("NO_COLOR") and bool(getattr(stream, "isatty", lambda: False)())


def run(args: argparse.Namespace) -> int:
    from ..inventory import survey

    cfg = load_config(args)
    pfs, inventory = survey(cfg)
    for problem in inventory.problems:
        print(f"vfctl: {problem}", file=sys.stderr)
    leases, waiting = read_ledger(cfg, waiting=True)
    tell_waiting(waiting, sys.stderr)  # on stderr: the table, the tree and the JSON stay what they are
    items = rows(inventory, leases, pf=args.pf, model=args.model, pool=args.pool, free=args.free)
    if args.tree:
        from .. import tree

        selected = {item["address"] for item in items}
        filtered = args.model or args.pool or args.free
        shown = [pf for pf in pfs if args.pf is None or pf.name == args.pf]
        built = tree.build(shown, inventory.vfs, leases, only=selected if filtered else None)
        if args.json:
            print(json.dumps(built, indent=2))
        else:
            print(tree.render(built, color=use_color(sys.stdout, os.environ)))
        return 1 if inventory.problems else 0
    if args.json:
        # One object per line: readable, and json's C encoder (indent= would switch to the slow Python one).
        print("[\n" + ",\n".join(json.dumps(item) for item in items) + "\n]" if items else "[]")
    elif items:
        print(table(items))
    elif not inventory.problems:
        filtered = args.pf or args.model or args.pool or args.free
        print("no VF matches" if filtered else "no VFs", file=sys.stderr)
    # A PF the configuration names but that cannot be used is the host's fault, not the listing's: the VFs
    # that exist are still printed, and the status says something needs fixing.
    return 1 if inventory.problems else 0
