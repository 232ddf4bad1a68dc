"""VF traffic counters as the PF reports them over rtnetlink (``IFLA_VF_STATS`` inside ``IFLA_VFINFO_LIST``).

Owns one thing: PF netdev names in, per-VF counters (or the reason there are none) out. It imports pyroute2
inside ``read`` only, so ``vfctl metrics`` on a host (or fixture) without a readable PF never pays for it, and
the hook never imports this module. It reads only; it must never change a VF.
A VF's counters count what the VF itself sent and received (the guest's traffic while passed through), as the
PF driver keeps them; a driver that keeps none omits ``IFLA_VF_STATS`` and the PF gets a reason instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Union

# The kernel's names (include/uapi/linux/if_link.h) -> the counter names metrics.py exports.
# broadcast and multicast count received frames (struct ifla_vf_stats).
FIELDS = {
    "IFLA_VF_STATS_RX_BYTES": "rx_bytes",
    "IFLA_VF_STATS_TX_BYTES": "tx_bytes",
    "IFLA_VF_STATS_RX_PACKETS": "rx_packets",
    "IFLA_VF_STATS_TX_PACKETS": "tx_packets",
    "IFLA_VF_STATS_RX_DROPPED": "rx_dropped",
    "IFLA_VF_STATS_TX_DROPPED": "tx_dropped",
    "IFLA_VF_STATS_BROADCAST": "rx_broadcast",
    "IFLA_VF_STATS_MULTICAST": "rx_multicast",
}

# VF index -> counter name -> value
VfCounters = dict[int, dict[str, int]]
# per PF: its VFs' counters, or one line saying why there are none
PfStats = Union[VfCounters, str]


def parse_vfinfo(vf_infos: Sequence[Mapping[str, object]]) -> PfStats:
    """The counters of each VF from the decoded ``IFLA_VF_INFO`` attributes of one PF (a mapping per VF of
    attribute name -> value; pyroute2 gives ``{"vf": n, ...}`` for IFLA_VF_MAC and attrs for IFLA_VF_STATS)."""
    out: VfCounters = {}
    for attrs in vf_infos:
        mac = attrs.get("IFLA_VF_MAC")
        stats = attrs.get("IFLA_VF_STATS")
        if not isinstance(mac, Mapping) or not isinstance(stats, Mapping):
            continue
        index = mac.get("vf")
        if not isinstance(index, int):
            continue
        out[index] = {name: int(stats.get(nla, 0) or 0) for nla, name in FIELDS.items()}
    if vf_infos and not out:
        return "the PF driver reports no VF statistics (IFLA_VF_STATS)"
    return out


def read(pfs: Sequence[str]) -> dict[str, PfStats]:
    """Counters of every VF of each PF in ``pfs`` (one RTM_GETLINK per PF), or why a PF has none."""
    if not pfs:
        return {}
    try:
        from pyroute2 import IPRoute  # lazy: 100-150 ms (see netlink.py)
    except ImportError as e:  # pragma: no cover - a Debian dependency
        return {pf: f"pyroute2 unavailable: {e}" for pf in pfs}
    out: dict[str, PfStats] = {}
    try:
        ipr = IPRoute()
    except OSError as e:
        return {pf: f"netlink socket: {e.strerror or e}" for pf in pfs}
    try:
        for pf in pfs:
            try:
                out[pf] = _read_pf(ipr, pf)
            except Exception as e:  # noqa: BLE001 - a reply this code cannot read is a gap, never a failed scrape
                from .log import LOG

                LOG.exception("reading the VF stats of %s", pf)
                out[pf] = f"unreadable netlink reply: {type(e).__name__}: {e}"
    finally:
        ipr.close()
    return out


def _read_pf(ipr: object, pf: str) -> PfStats:
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        found = ipr.link_lookup(ifname=pf)  # type: ignore[attr-defined]
        if not found:
            return f"no netdev {pf} in this network namespace"
        link = ipr.get_links(found[0], ext_mask=1)[0]  # type: ignore[attr-defined]  # RTEXT_FILTER_VF
    except NetlinkError as e:
        return f"netlink: {e}"
    vfinfo = link.get_attr("IFLA_VFINFO_LIST")
    if not vfinfo:
        return "the PF reports no VFs over netlink"
    infos = []
    for info in vfinfo.get_attrs("IFLA_VF_INFO"):
        attrs: dict[str, object] = {}
        for name, value in info["attrs"]:
            if name == "IFLA_VF_STATS":
                value = dict(value["attrs"])
            attrs[name] = value
        infos.append(attrs)
    return parse_vfinfo(infos)
