"""``vfctl history``: the ledger's event journal (claims, refusals, releases, expiries), as a table or JSON.

Read only: it never creates the ledger (no file: nothing ever happened, an empty history). ``records`` and
``table`` are pure; ``run`` opens the ledger.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from . import aligned
from . import config as load_config

HELP = "show the ledger's journal: claims, refusals, releases, expiries (oldest first)"

# The JSON contract: exactly these keys, in this order.
KEYS = ("id", "time", "domain", "domain_uuid", "network", "vf", "action", "outcome", "detail")
COLUMNS = (("TIME (UTC)", "time"), ("DOMAIN", "domain"), ("VF", "vf"), ("ACTION", "action"),
           ("OUTCOME", "outcome"), ("DETAIL", "detail"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--domain", metavar="D", help="only events of this domain (name or UUID)")
    parser.add_argument("--vf", metavar="ADDR", help="only events of this VF (PCI address)")
    parser.add_argument("--limit", metavar="N", type=int, help="only the newest N events")
    parser.add_argument("--json", action="store_true", help="a JSON array of objects instead of a table")


def records(events: Sequence[Any]) -> list[dict[str, Any]]:
    """One mapping per ledger Event with exactly ``KEYS``; ``time`` in ISO 8601, UTC."""
    return [
        {
            "id": e.id,
            "time": datetime.fromtimestamp(e.time, timezone.utc).isoformat(timespec="seconds"),
            "domain": e.domain_name,
            "domain_uuid": e.domain_uuid,
            "network": getattr(e, "network", None),  # the libvirt network the event came through, if any
            "vf": e.vf,
            "action": e.action,
            "outcome": e.outcome,
            "detail": e.detail,
        }
        for e in events
    ]


def table(items: Sequence[Mapping[str, Any]]) -> str:
    lines = [[title for title, _ in COLUMNS]]
    for row in items:
        cells = []
        for _, key in COLUMNS:
            value = row[key]
            if key == "time":
                value = value.replace("T", " ").replace("+00:00", "")
            elif key == "domain" and value is None:
                value = row["domain_uuid"]
            cells.append("-" if value in (None, "") else str(value))
        lines.append(cells)
    return aligned(lines)


def run(args: argparse.Namespace) -> int:
    from ..addresses import PciAddress
    from ..ledger import Ledger, exists

    cfg = load_config(args)
    vf = str(PciAddress.parse(args.vf)) if args.vf else None
    found = exists(cfg.ledger)
    events: list[Any] = []
    if found:
        with Ledger.open(cfg.ledger, ttl=cfg.reservation_ttl, create=False) as ledger:
            events = ledger.history(domain=args.domain, vf=vf, limit=args.limit)
    items = records(events)
    if args.json:
        print(json.dumps(items, indent=2))
    elif items:
        print(table(items))
    else:
        print("no events" + ("" if found else f" (no ledger at {cfg.ledger} yet)"), file=sys.stderr)
    return 0
