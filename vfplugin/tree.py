"""``vfctl list --tree``: NUMA node -> PF -> VF -> domain, as a mapping (``--json``) and as drawn text.

``build`` is pure (PFs, VFs and leases in, one JSON-ready mapping out); ``render`` draws that mapping with
box-drawing characters, in color only when asked (the caller decides: a terminal, and no ``NO_COLOR``).
The text and the JSON are the same tree: ``render`` reads nothing but what ``build`` returned.
A PF's eswitch mode comes from sysfs alone (``switchdev`` when its VFs have representors, else ``legacy``):
no devlink call, so the tree costs what ``vfctl list`` costs.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

# ANSI SGR codes; only ever written when render(color=True)
_BOLD, _DIM, _GREEN, _YELLOW, _CYAN, _RED, _RESET = (
    "\033[1m", "\033[2m", "\033[32m", "\033[33m", "\033[36m", "\033[31m", "\033[0m")
_STATE_COLOR = {"active": _GREEN, "reserved": _YELLOW, "free": _DIM}


def build(
    pfs: Sequence[Any], vfs: Sequence[Any], leases: Mapping[str, Any], only: Collection[str] | None = None,
) -> dict[str, Any]:
    """The tree: ``pfs`` are inventory.PfInfo, ``vfs`` inventory.VfInfo, ``leases`` VF address -> live lease;
    ``only``: the VF addresses to show (a filter), the PF's counts still count all its VFs. NUMA nodes in
    order, PFs without one last."""
    by_pf: dict[str, list[Any]] = {}
    for vf in vfs:
        by_pf.setdefault(vf.pf, []).append(vf)
    nodes: dict[int | None, list[dict[str, Any]]] = {}
    for pf in pfs:
        pf_vfs = by_pf.get(pf.name, [])
        children = [_vf(vf, leases.get(str(vf.address))) for vf in pf_vfs]
        used = sum(1 for c in children if c["state"] != "free")
        total = len(children)
        if only is not None:
            children = [c for c in children if c["address"] in only]
        nodes.setdefault(pf.numa_node, []).append({
            "pf": pf.name,
            "address": pf.address or None,
            "model": pf.model or None,
            "driver": pf.driver or None,
            "eswitch": ("switchdev" if any(vf.representor for vf in pf_vfs) else "legacy") if pf.address else None,
            "vfs_used": used,
            "vfs_total": total,
            "vfs_supported": pf.total_vfs,
            "problem": pf.problem,
            "vfs": children,
        })
    order = sorted(nodes, key=lambda n: (n is None, n or 0))
    return {"numa_nodes": [{"numa_node": n, "pfs": nodes[n]} for n in order]}


def _vf(vf: Any, lease: Any) -> dict[str, Any]:
    domain = None
    if lease is not None:
        domain = {"name": lease.domain_name, "uuid": getattr(lease, "domain_uuid", None), "state": lease.state,
                  "mac": lease.mac, "vlan": lease.vlan}
    return {
        "vf_index": vf.vf_index,
        "address": str(vf.address),
        "model": vf.model,
        "driver": vf.driver,
        "pool": vf.pool,
        "state": lease.state if lease is not None else "free",
        "domain": domain,
    }


def render(tree: Mapping[str, Any], color: bool = False) -> str:
    """The tree as text, one line per node."""

    def paint(text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if color else text

    lines: list[str] = []
    for node in tree["numa_nodes"]:
        n = node["numa_node"]
        lines.append(paint(f"NUMA node {n}" if n is not None else "no NUMA node", _BOLD))
        for i, pf in enumerate(node["pfs"]):
            last_pf = i == len(node["pfs"]) - 1
            lines.append(("└── " if last_pf else "├── ") + _pf_line(pf, paint))
            indent = "    " if last_pf else "│   "
            for j, vf in enumerate(pf["vfs"]):
                last_vf = j == len(pf["vfs"]) - 1
                lines.append(indent + ("└── " if last_vf else "├── ") + _vf_line(vf, paint))
                if vf["domain"] is not None:
                    lines.append(indent + ("    " if last_vf else "│   ") + "└── " + _domain_line(vf["domain"], paint))
    return "\n".join(lines)


def _pf_line(pf: Mapping[str, Any], paint: Any) -> str:
    if pf["address"] is None:
        return f"{paint(pf['pf'], _BOLD)}  {paint(pf['problem'], _RED)}"
    parts = [f"{paint(pf['pf'], _BOLD)} {pf['address']}", pf["model"] or "?"]
    parts.append(f"{pf['vfs_used']}/{pf['vfs_total']} VFs used")
    parts.append(f"eswitch {pf['eswitch']}")
    line = "  ".join(parts)
    return line + (f"  {paint(pf['problem'], _RED)}" if pf["problem"] else "")


def _vf_line(vf: Mapping[str, Any], paint: Any) -> str:
    state = vf["state"]
    parts = [f"VF {vf['vf_index']}", vf["address"], vf["driver"] or "no driver"]
    if vf["pool"]:
        parts.append(f"pool {vf['pool']}")
    if state == "free":
        parts.append(paint("free", _STATE_COLOR["free"]))
    return "  ".join(parts)


def _domain_line(domain: Mapping[str, Any], paint: Any) -> str:
    parts = [paint(domain["name"], _CYAN), paint(domain["state"], _STATE_COLOR.get(domain["state"], ""))]
    if domain["mac"]:
        parts.append(f"MAC {domain['mac']}")
    if domain["vlan"] is not None:
        parts.append(f"VLAN {domain['vlan']}")
    return "  ".join(parts)
