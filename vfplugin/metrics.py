"""Prometheus metrics of one host: inventory + ledger + VF traffic counters -> metric families, read afresh.

Owns the metric names, their labels and their meaning (the README's Metrics section is the reference).
``gather(cfg)`` reads the host (sysfs, the ledger without creating it, netlink VF stats) and returns plain
``Family`` records; ``families`` is the pure part (facts in, families out). Two ways out:
- ``registry(cfg)``: a ``prometheus_client.CollectorRegistry`` whose collector calls ``gather`` on every
  collect (the agent serves it on ``/metrics``);
- ``text(families)``: the Prometheus text format (0.0.4), byte for byte what ``prometheus_client``'s
  ``generate_latest`` writes for the same families (tests/test_metrics.py holds it to that), for
  ``vfctl metrics``: importing prometheus_client costs 80 ms (it loads http.server, ssl, email), 8x the bare
  interpreter, which the command's budget (bench/bench_metrics.py) cannot afford.
A figure that cannot be read (a PF that is missing or has no VFs, a driver without VF stats, an unreadable
ledger) drops only its own series and shows as a 0 in an ``*_up``/``*_available`` series; nothing here raises
for it. It reads only: it must never change the host or the ledger's leases.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .config import Config
from .record import Record

STATES = ("free", "reserved", "active")
# Hook latency buckets (seconds): the hook's own figures are 8-20 ms (README, Benchmarks); a slow disk or a
# netlink setting takes it to hundreds of ms; libvirt waits for it, so anything past a second matters.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Refusal reasons, from the journal entry's detail (the error templates in errors.py).
REFUSAL_REASONS = ("vf_busy", "no_vf", "setup_failed", "other")
TRAFFIC = (
    # (metric name without _total, vfstats counter, help)
    ("vfplugin_vf_receive_bytes", "rx_bytes", "Bytes the VF received, as its PF counts them (IFLA_VF_STATS)."),
    ("vfplugin_vf_transmit_bytes", "tx_bytes", "Bytes the VF sent, as its PF counts them (IFLA_VF_STATS)."),
    ("vfplugin_vf_receive_packets", "rx_packets", "Packets the VF received (IFLA_VF_STATS)."),
    ("vfplugin_vf_transmit_packets", "tx_packets", "Packets the VF sent (IFLA_VF_STATS)."),
    ("vfplugin_vf_receive_dropped_packets", "rx_dropped", "Received packets the VF dropped (IFLA_VF_STATS)."),
    ("vfplugin_vf_transmit_dropped_packets", "tx_dropped", "Packets to send the VF dropped (IFLA_VF_STATS)."),
    ("vfplugin_vf_receive_broadcast_packets", "rx_broadcast", "Broadcast packets the VF received (IFLA_VF_STATS)."),
    ("vfplugin_vf_receive_multicast_packets", "rx_multicast", "Multicast packets the VF received (IFLA_VF_STATS)."),
)


class Family:
    """One metric family: ``name`` as prometheus_client names it (a counter without ``_total``), its type
    (gauge, counter, histogram), help, and samples (full sample name, labels, value), added one by one."""

    __slots__ = ("name", "type", "help", "samples")

    def __init__(self, name: str, type: str, help: str) -> None:  # noqa: A002 - Prometheus' own words
        self.name, self.type, self.help = name, type, help
        self.samples: list[tuple[str, dict[str, str], float]] = []

    def add(self, labels: Mapping[str, Any], value: float, suffix: str = "") -> None:
        name = self.name + ("_total" if self.type == "counter" else suffix)
        self.samples.append((name, {k: "" if v is None else str(v) for k, v in labels.items()}, float(value)))


_NONE: Mapping[str, Any] = {}


class HostFacts(Record):
    """Everything ``families`` turns into series."""

    pfs: tuple[Any, ...]  # inventory.PfInfo
    vfs: tuple[Any, ...]  # inventory.VfInfo
    leases: Mapping[str, Any] | None  # VF address -> live lease (ledger.Lease); None: ledger unreadable
    journal: Mapping[str, Any] | None = None  # Ledger.journal_summary(BUCKETS); None: no ledger yet
    stats: Mapping[str, Any] = _NONE  # PF -> vfstats.PfStats (counters or a reason)
    pools: tuple[str, ...] = ()  # configured pool names


# --- the pure part ---------------------------------------------------------------------------------------


def refusal_reason(detail: str) -> str:
    """Which of REFUSAL_REASONS a refusal's journal detail is (errors.VfBusy, errors.NoCandidate...)."""
    if " is in use by domain " in detail:
        return "vf_busy"
    if detail.startswith("no VF for nic "):
        return "no_vf"
    return "other"


def _fixes(detail: str) -> int:
    """The N of a reconcile entry's "N fixes[, M failures]"."""
    head = detail.split(" ", 1)[0]
    return int(head) if head.isdigit() else 0


def families(facts: HostFacts) -> list[Family]:
    """The families of one host, in a fixed order, every sample's labels in a fixed order."""
    out: list[Family] = []

    # --- PFs ---
    pf_up = Family("vfplugin_pf_up", "gauge",
                   "1 if the configured PF exists, has SR-IOV and VFs; 0 if not (vfctl list names the problem).")
    pf_info = Family("vfplugin_pf_info", "gauge", "Facts of a managed PF as labels; always 1.")
    pf_supported = Family("vfplugin_pf_vfs_supported", "gauge", "VFs the PF can have (sriov_totalvfs).")
    pf_created = Family("vfplugin_pf_vfs_created", "gauge", "VFs the PF has (sriov_numvfs).")
    for pf in facts.pfs:
        pf_up.add({"pf": pf.name}, 0 if pf.problem else 1)
        if pf.address:
            pf_info.add({"pf": pf.name, "pci_address": pf.address, "model": pf.model, "driver": pf.driver,
                         "numa_node": pf.numa_node}, 1)
            pf_supported.add({"pf": pf.name}, pf.total_vfs)
            pf_created.add({"pf": pf.name}, pf.num_vfs)
    out += [pf_up, pf_info, pf_supported, pf_created]

    # --- VF state, per VF, PF and pool ---
    ledger_up = Family("vfplugin_ledger_up", "gauge", "1 if the ledger could be read (or does not exist yet), else 0.")
    ledger_up.add({}, 0 if facts.leases is None else 1)
    out.append(ledger_up)
    if facts.leases is not None:
        vf_state = Family("vfplugin_vf_state", "gauge",
                          "1 for the VF's current state (free, reserved, active), 0 for the others.")
        pf_vfs = Family("vfplugin_pf_vfs", "gauge", "VFs of the PF in each state.")
        pool_vfs = Family("vfplugin_pool_vfs", "gauge", "VFs a pool admits, in each state.")
        per_pf: dict[str, dict[str, int]] = {}
        pf_labels: dict[str, dict[str, Any]] = {}
        per_pool: dict[str, dict[str, int]] = {p: dict.fromkeys(STATES, 0) for p in facts.pools}
        state_name = vf_state.name
        for vf in facts.vfs:
            lease = facts.leases.get(str(vf.address))
            state = lease.state if lease is not None else "free"
            labels = {k: "" if v is None else str(v) for k, v in _vf_labels(vf).items()}  # once, not per state
            labels["domain"] = lease.domain_name if lease is not None else ""
            labels["domain_uuid"] = lease.domain_uuid if lease is not None else ""
            for s in STATES:
                vf_state.samples.append((state_name, {**labels, "state": s}, 1.0 if s == state else 0.0))
            counts = per_pf.setdefault(vf.pf, dict.fromkeys(STATES, 0))
            counts[state] += 1
            pf_labels.setdefault(vf.pf, {"pf": vf.pf, "model": vf.model, "numa_node": vf.numa_node})
            for pool in vf.pools:
                per_pool.setdefault(pool, dict.fromkeys(STATES, 0))[state] += 1
        for pf_name, counts in per_pf.items():
            for s in STATES:
                pf_vfs.add({**pf_labels[pf_name], "state": s}, counts[s])
        for pool, counts in per_pool.items():
            for s in STATES:
                pool_vfs.add({"pool": pool, "state": s}, counts[s])
        out += [vf_state, pf_vfs, pool_vfs]

    # --- traffic, through the PF ---
    available = Family("vfplugin_vf_stats_available", "gauge",
                       "1 if the PF reports its VFs' traffic counters (netlink IFLA_VF_STATS), else 0.")
    traffic = [Family(name, "counter", text) for name, _, text in TRAFFIC]
    leases = facts.leases or {}
    for pf in facts.pfs:
        if pf.problem:
            continue
        stats = facts.stats.get(pf.name, "not read")
        available.add({"pf": pf.name}, 0 if isinstance(stats, str) else 1)
    for vf in facts.vfs:
        stats = facts.stats.get(vf.pf)
        counters = stats.get(vf.vf_index) if isinstance(stats, Mapping) else None
        if counters is None:
            continue
        lease = leases.get(str(vf.address))
        labels = {"pci_address": str(vf.address), "pf": vf.pf, "vf": vf.vf_index,
                  "domain": lease.domain_name if lease is not None else "",
                  "domain_uuid": lease.domain_uuid if lease is not None else ""}
        for family, (_, key, _) in zip(traffic, TRAFFIC):
            family.add(labels, counters.get(key, 0))
    out.append(available)
    out += traffic

    # --- the journal ---
    if facts.leases is not None:
        out += journal_families(facts.journal or {})
    return out


def journal_families(journal: Mapping[str, Any]) -> list[Family]:
    """Counters from the append-only journal (so they only grow) and the hook latency histogram."""
    claims = Family("vfplugin_claims", "counter", "VFs claimed by the hook at prepare begin (journal: claim ok).")
    reservations = Family("vfplugin_reservations", "counter",
                          "VFs reserved by vfctl define/start/attach or migrate/restore (journal: reserve ok).")
    refusals = Family("vfplugin_refusals", "counter",
                      "Claims and reservations refused, and starts refused after the claim, by reason.")
    releases = Family("vfplugin_releases", "counter", "Leases released (journal: release ok).")
    takeovers = Family("vfplugin_stale_takeovers", "counter",
                       "Stale leases (earlier boot, expired reservation) taken over by a claim or reservation.")
    expired = Family("vfplugin_expired_leases", "counter", "Stale leases removed by reconcile (journal: expire ok).")
    fixes = Family("vfplugin_reconcile_fixes", "counter", "Fixes made by reconcile runs.")
    latency = Family("vfplugin_hook_duration_seconds", "histogram",
                     "Time from the hook's start to its journal entry, by journaled operation.")
    counts = journal.get("counts", {})
    reasons = dict.fromkeys(REFUSAL_REASONS, 0)
    for detail in journal.get("refusals", ()):
        # a release after a refused start: claimed, then a setting or an OVS plug failed and the hook gave it back
        reasons["setup_failed" if detail.startswith("start refused:") else refusal_reason(detail)] += 1
    claims.add({}, counts.get(("claim", "ok"), 0))
    reservations.add({}, counts.get(("reserve", "ok"), 0))
    for reason in REFUSAL_REASONS:
        refusals.add({"reason": reason}, reasons[reason])
    releases.add({}, counts.get(("release", "ok"), 0))
    takeovers.add({}, counts.get(("takeover", "ok"), 0))
    expired.add({}, counts.get(("expire", "ok"), 0))
    fixes.add({}, journal.get("fixes", 0))
    for operation, (cumulative, count, total) in sorted(journal.get("durations", {}).items()):
        for bound, n in zip(BUCKETS, cumulative):
            latency.add({"operation": operation, "le": _value(bound)}, n or 0, "_bucket")
        latency.add({"operation": operation, "le": "+Inf"}, count, "_bucket")
        latency.add({"operation": operation}, count, "_count")
        latency.add({"operation": operation}, total or 0.0, "_sum")
    return [claims, reservations, refusals, releases, takeovers, expired, fixes, latency]


def _vf_labels(vf: Any) -> dict[str, Any]:
    return {"pci_address": str(vf.address), "pf": vf.pf, "vf": vf.vf_index, "numa_node": vf.numa_node,
            "model": vf.model, "pool": vf.pool}


# --- the text format -------------------------------------------------------------------------------------


def _value(d: float) -> str:
    """A sample value as Go (and prometheus_client.utils.floatToGoString) writes it."""
    if d == float("inf"):
        return "+Inf"
    if d == float("-inf"):
        return "-Inf"
    if d != d:
        return "NaN"
    s = repr(float(d))
    dot = s.find(".")
    if d > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+0{dot - 1}"
    return s


def _escape_label(v: str) -> str:
    if "\\" in v or "\n" in v or '"' in v:
        return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return v


def text(fams: Iterable[Family]) -> str:
    """The Prometheus text exposition format 0.0.4 of ``fams``, exactly as generate_latest writes it."""
    out = []
    orders: dict[tuple[str, ...], list[str]] = {}  # label names -> sorted (one sort per label set, not per sample)
    pairs: dict[tuple[str, str], str] = {}  # (name, value) -> 'name="escaped value"': most values repeat
    values: dict[float, str] = {}
    for f in fams:
        name = f.name + "_total" if f.type == "counter" else f.name
        doc = f.help.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {f.type}\n")
        for sample, labels, value in f.samples:
            if labels:
                keys = tuple(labels)
                order = orders.get(keys)
                if order is None:
                    order = orders[keys] = sorted(keys)
                rendered = []
                for k in order:
                    pair = pairs.get((k, labels[k]))
                    if pair is None:
                        pair = pairs[(k, labels[k])] = f'{k}="{_escape_label(labels[k])}"'
                    rendered.append(pair)
                shown = values.get(value)
                if shown is None:
                    shown = values[value] = _value(value)
                out.append(f"{sample}{{{','.join(rendered)}}} {shown}\n")
            else:
                out.append(f"{sample} {_value(value)}\n")
    return "".join(out)


# --- reading the host ------------------------------------------------------------------------------------

StatsReader = Callable[[Sequence[str]], Mapping[str, Any]]


def default_stats(cfg: Config) -> StatsReader:
    """Netlink VF stats on the real host; on a fixture tree (sysfs_root not /) the PF names are not this
    machine's netdevs, so each PF says so instead of reading an unrelated interface."""
    if os.path.realpath(cfg.sysfs_root) != "/":
        return lambda pfs: {pf: "sysfs_root is not / (a fixture): no netlink" for pf in pfs}
    from .vfstats import read

    return read


def gather(
    cfg: Config, *, stats: StatsReader | None = None, pciids: Any = None, sysfs: Any = None,
) -> list[Family]:
    """Read the host now and return its families (see the module docstring for what may be missing)."""
    from .errors import LedgerError
    from .inventory import survey

    pfs, inventory = survey(cfg, sysfs, pciids)
    leases: dict[str, Any] | None
    journal: dict[str, Any] | None = None
    try:
        leases, journal = _ledger(cfg)
    except LedgerError:
        leases = None
    readable = [pf.name for pf in pfs if not pf.problem]
    reader = stats or default_stats(cfg)
    return families(HostFacts(
        pfs=pfs, vfs=inventory.vfs, leases=leases, journal=journal, stats=reader(readable),
        pools=tuple(p.name for p in cfg.pools),
    ))


def _ledger(cfg: Config) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Live leases by VF and the journal's summary; nothing at all when the ledger file does not exist yet."""
    from .ledger import Ledger, exists

    if not exists(cfg.ledger):
        return {}, None
    ledger = Ledger.open(cfg.ledger, ttl=cfg.reservation_ttl, create=False)
    try:
        return {lease.vf: lease for lease in ledger.leases() if not lease.stale}, ledger.journal_summary(BUCKETS)
    finally:
        ledger.close()


# --- prometheus_client ------------------------------------------------------------------------------------


def registry(cfg: Config, **options: Any) -> Any:
    """A CollectorRegistry whose one collector reads the host afresh on every collect (scrape); ``options``
    go to ``gather`` (tests give ``stats`` and ``pciids``)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

    class _Collector:
        def collect(self) -> Iterable[Any]:
            for f in gather(cfg, **options):
                yield to_metric(f, Metric)

    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector())  # type: ignore[arg-type]  # a collector is anything with collect()
    return reg


def to_metric(f: Family, metric_class: Any = None) -> Any:
    """One Family as a prometheus_client Metric."""
    if metric_class is None:
        from prometheus_client.core import Metric as metric_class
    metric = metric_class(f.name, f.help, f.type)
    for sample, labels, value in f.samples:
        metric.add_sample(sample, labels, value)
    return metric
