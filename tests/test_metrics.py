"""``vfctl metrics`` and metrics.registry(): exact values on fixture hosts with leases in every state,
promtool's acceptance, byte-equality with prometheus_client's own exposition, and gaps shown as series."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES, require_tool
from tests.hosts import write_config
from vfplugin.cli import main
from vfplugin.config import load
from vfplugin.errors import NoCandidate
from vfplugin.ledger import Ledger, Want
from vfplugin.metrics import REFUSAL_REASONS, gather, registry, text
from vfplugin.pciids import PciIds

pytestmark = pytest.mark.fixtures

PCIIDS = PciIds(FIXTURES / "pci.ids")
WEB, DB1, DB2 = "11111111-2222-4333-8444-555555555555", "u-db1", "u-db2"
STATS = {
    "eth2": {
        0: {"rx_bytes": 1000, "tx_bytes": 2000, "rx_packets": 10, "tx_packets": 20, "rx_dropped": 1,
            "tx_dropped": 2, "rx_broadcast": 3, "rx_multicast": 4},
        1: {"rx_bytes": 5 * 10**12, "tx_bytes": 7, "rx_packets": 1, "tx_packets": 1, "rx_dropped": 0,
            "tx_dropped": 0, "rx_broadcast": 0, "rx_multicast": 0},
    },
    "eth3": "the PF driver reports no VF statistics (IFLA_VF_STATS)",
}


def stats(pfs: Any) -> dict[str, Any]:
    return {pf: STATS[pf] for pf in pfs}


def no_vf(snapshot: Any) -> Any:
    raise NoCandidate(nic="net0", selector="pool=slow", why="unknown pool 'slow' (configured pools: fast)")


def seed(path: Path) -> None:
    """Leases in every state on the example host, and one of each journal entry the counters count."""
    with Ledger.open(path, boot_id="an-earlier-boot") as old:  # two leases from before a reboot: stale
        old.claim("u-ghost", "ghost", [Want("0000:0a:10.4", "net0"), Want("0000:0a:11.0", "net1")])
    with Ledger.open(path) as ledger:
        # as the hook does: its entries record how long the event had taken (here: at least 0.3 s)
        ledger.started = time.monotonic() - 0.3
        ledger.claim(WEB, "web1", [Want("0000:3b:00.2", "net0", "52:54:00:aa:bb:cc", 100)])
        ledger.started = None
        ledger.reserve(DB1, "db1", [Want("0000:0a:10.0", "net0")])
        ledger.claim(DB2, "db2", [Want("0000:0a:10.4", "net0")])  # takes the stale lease over
        with pytest.raises(Exception, match="in use by domain"):
            ledger.claim(DB1, "db1", [Want("0000:3b:00.2", "net1")])
        with pytest.raises(NoCandidate):
            ledger.allocate(DB1, "db1", no_vf)
        ledger.claim("u-gone", "gone", [Want("0000:3b:00.3", "net0")])
        ledger.release("u-gone", reason="start refused: PF eth3 refused trust=on for VF 1: EOPNOTSUPP")
        ledger.journal("reconcile", "ok", detail="3 fixes, 0 failures")
        ledger.journal("reconcile", "failed", detail="1 fixes, 1 failures")


def samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }


def value(found: dict[Any, float], name: str, **labels: Any) -> float:
    return found[(name, frozenset((k, str(v)) for k, v in labels.items()))]


@pytest.fixture
def seeded(tmp_path: Path) -> Any:
    cfg = load(str(write_config(tmp_path, "example")))
    seed(Path(cfg.ledger))
    return cfg


def test_every_state_and_counter_has_its_exact_value(seeded: Any) -> None:
    found = samples(text(gather(seeded, stats=stats, pciids=PCIIDS)))
    i350 = {"model": "I350 Ethernet Controller Virtual Function", "numa_node": 0, "pool": ""}
    # one-hot state per VF, with the holder
    for address, vf, domain, uuid, state in (
        ("0000:0a:10.0", 0, "db1", DB1, "reserved"),
        ("0000:0a:10.4", 1, "db2", DB2, "active"),  # taken over from the stale lease
        ("0000:0a:11.0", 2, "", "", "free"),  # its lease is from an earlier boot
        ("0000:0a:11.4", 3, "", "", "free"),
    ):
        for s in ("free", "reserved", "active"):
            assert value(found, "vfplugin_vf_state", pci_address=address, pf="eth2", vf=vf, domain=domain,
                         domain_uuid=uuid, state=s, **i350) == (1 if s == state else 0), (address, s)
    assert value(found, "vfplugin_vf_state", pci_address="0000:3b:00.2", pf="eth3", vf=0, domain="web1",
                 domain_uuid=WEB, state="active", model="ConnectX-5 Virtual Function", numa_node=1,
                 pool="fast") == 1
    # per PF and pool
    pf2 = {"pf": "eth2", "model": i350["model"], "numa_node": 0}
    pf3 = {"pf": "eth3", "model": "ConnectX-5 Virtual Function", "numa_node": 1}
    assert [value(found, "vfplugin_pf_vfs", state=s, **pf2) for s in ("free", "reserved", "active")] == [2, 1, 1]
    assert [value(found, "vfplugin_pf_vfs", state=s, **pf3) for s in ("free", "reserved", "active")] == [3, 0, 1]
    assert [value(found, "vfplugin_pool_vfs", pool="fast", state=s) for s in ("free", "reserved", "active")] == [
        3, 0, 1]
    assert value(found, "vfplugin_pf_vfs_created", pf="eth2") == 4
    assert value(found, "vfplugin_pf_vfs_supported", pf="eth3") == 8
    assert value(found, "vfplugin_pf_up", pf="eth2") == value(found, "vfplugin_pf_up", pf="eth3") == 1
    # the journal
    assert value(found, "vfplugin_claims_total") == 5  # ghost x2, web1, db2, gone
    assert value(found, "vfplugin_reservations_total") == 1
    assert value(found, "vfplugin_stale_takeovers_total") == 1
    assert value(found, "vfplugin_releases_total") == 1
    assert value(found, "vfplugin_reconcile_fixes_total") == 4
    assert {r: value(found, "vfplugin_refusals_total", reason=r) for r in REFUSAL_REASONS} == {
        "vf_busy": 1, "no_vf": 1, "setup_failed": 1, "other": 0}
    assert value(found, "vfplugin_ledger_up") == 1


def test_traffic_counters_carry_the_holding_domain_and_a_pf_without_stats_is_a_zero(seeded: Any) -> None:
    found = samples(text(gather(seeded, stats=stats, pciids=PCIIDS)))
    free_vf = {"pci_address": "0000:0a:10.0", "pf": "eth2", "vf": 0, "domain": "db1", "domain_uuid": DB1}
    assert value(found, "vfplugin_vf_receive_bytes_total", **free_vf) == 1000
    assert value(found, "vfplugin_vf_transmit_dropped_packets_total", **free_vf) == 2
    assert value(found, "vfplugin_vf_receive_multicast_packets_total", **free_vf) == 4
    db2 = {"pci_address": "0000:0a:10.4", "pf": "eth2", "vf": 1, "domain": "db2", "domain_uuid": DB2}
    assert value(found, "vfplugin_vf_receive_bytes_total", **db2) == 5 * 10**12
    # eth3's driver keeps no VF stats: its VFs have no traffic series, the gap is a series, the rest is there
    assert value(found, "vfplugin_vf_stats_available", pf="eth2") == 1
    assert value(found, "vfplugin_vf_stats_available", pf="eth3") == 0
    assert not [k for k in found if k[0].startswith("vfplugin_vf_receive") and ("pf", "eth3") in k[1]]
    assert value(found, "vfplugin_pf_vfs", pf="eth3", model="ConnectX-5 Virtual Function", numa_node=1,
                 state="active") == 1


def test_the_text_is_byte_for_byte_what_prometheus_client_writes(seeded: Any) -> None:
    from prometheus_client import generate_latest

    ours = text(gather(seeded, stats=stats, pciids=PCIIDS))
    theirs = generate_latest(registry(seeded, stats=stats, pciids=PCIIDS)).decode("utf-8")
    assert ours == theirs


def test_the_registry_reads_the_host_afresh_on_every_collect(tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    cfg = load(str(write_config(tmp_path, "example")))
    reg = registry(cfg, stats=stats, pciids=PCIIDS)
    before = samples(generate_latest(reg).decode())
    with Ledger.open(cfg.ledger) as ledger:
        ledger.claim(WEB, "web1", [Want("0000:3b:00.5", "net0")])
    after = samples(generate_latest(reg).decode())
    active = {"pf": "eth3", "model": "ConnectX-5 Virtual Function", "numa_node": 1, "state": "active"}
    assert value(before, "vfplugin_pf_vfs", **active) == 0
    assert value(after, "vfplugin_pf_vfs", **active) == 1
    assert value(after, "vfplugin_claims_total") == 1


@pytest.mark.parametrize("host", ["example", "intel", "noiommu"])
def test_promtool_accepts_the_output_of_every_fixture_host(tmp_path: Path, host: str) -> None:
    require_tool("promtool")
    cfg = load(str(write_config(tmp_path, host)))
    if host == "example":
        seed(Path(cfg.ledger))
    exposition = text(gather(cfg, stats=lambda pfs: {pf: STATS.get(pf, "no netdev") for pf in pfs}))
    done = subprocess.run(["promtool", "check", "metrics"], input=exposition, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout + done.stderr == ""  # not even a lint warning


def test_a_missing_pf_and_a_pf_without_vfs_are_zeros_and_the_rest_is_there(tmp_path: Path, capsys: Any) -> None:
    config = write_config(tmp_path, "intel")
    assert main(["--config", str(config), "metrics"]) == 0
    found = samples(capsys.readouterr().out)
    assert value(found, "vfplugin_pf_up", pf="ens1f1") == 0  # sriov_numvfs is 0
    assert value(found, "vfplugin_pf_up", pf="ens1f0") == 1
    assert value(found, "vfplugin_pf_vfs_created", pf="ens1f1") == 0
    # on a fixture tree the PF names are not this machine's netdevs: no netlink, said per PF
    assert value(found, "vfplugin_vf_stats_available", pf="ens1f0") == 0
    assert value(found, "vfplugin_claims_total") == 0  # no ledger file yet: nothing ever happened
    config = write_config(tmp_path, "noiommu")
    assert main(["--config", str(config), "metrics"]) == 0
    found = samples(capsys.readouterr().out)
    assert value(found, "vfplugin_pf_up", pf="eth9") == 0  # does not exist
    assert sum(v for (name, _), v in found.items() if name == "vfplugin_vf_state") == 3


def test_an_unreadable_ledger_is_a_zero_not_a_failure(tmp_path: Path, capsys: Any) -> None:
    ledger = tmp_path / "ledger.sqlite3"
    ledger.write_bytes(b"this is not a database, and not empty either" * 100)
    assert main(["--config", str(write_config(tmp_path, "example")), "metrics"]) == 0
    found = samples(capsys.readouterr().out)
    assert value(found, "vfplugin_ledger_up") == 0
    assert value(found, "vfplugin_pf_up", pf="eth2") == 1
    assert not [k for k in found if k[0] == "vfplugin_vf_state"]


def test_textfile_is_written_atomically_for_node_exporter(tmp_path: Path) -> None:
    config = write_config(tmp_path, "example")
    out = tmp_path / "textfile"
    out.mkdir()
    assert main(["--config", str(config), "metrics", "--textfile", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["vfplugin.prom"]  # no temporary file left behind
    prom = out / "vfplugin.prom"
    assert prom.stat().st_mode & 0o777 == 0o644
    assert "vfplugin_pf_up{pf=\"eth2\"} 1.0" in prom.read_text()
    assert main(["--config", str(config), "metrics", "--textfile", str(tmp_path / "missing")]) == 1


def test_hook_latency_is_a_histogram_per_operation_from_the_journal(seeded: Any) -> None:
    found = samples(text(gather(seeded, stats=stats, pciids=PCIIDS)))
    claim = {"operation": "claim"}
    assert value(found, "vfplugin_hook_duration_seconds_count", **claim) == 1
    assert 0.3 <= value(found, "vfplugin_hook_duration_seconds_sum", **claim) < 10
    assert value(found, "vfplugin_hook_duration_seconds_bucket", le="0.25", **claim) == 0
    assert value(found, "vfplugin_hook_duration_seconds_bucket", le="10.0", **claim) == 1
    assert value(found, "vfplugin_hook_duration_seconds_bucket", le="+Inf", **claim) == 1
    # entries written without a start time (vfctl, reconcile) are no part of it
    assert not [k for k in found if k[0] == "vfplugin_hook_duration_seconds_count" and k != (
        "vfplugin_hook_duration_seconds_count", frozenset(claim.items()))]


def test_vf_stats_are_read_from_the_pfs_vfinfo_and_a_driver_without_them_is_a_reason() -> None:
    from vfplugin.vfstats import parse_vfinfo

    stats = {"IFLA_VF_STATS_RX_BYTES": 10, "IFLA_VF_STATS_TX_BYTES": 20, "IFLA_VF_STATS_RX_PACKETS": 1,
             "IFLA_VF_STATS_TX_PACKETS": 2, "IFLA_VF_STATS_BROADCAST": 3, "IFLA_VF_STATS_MULTICAST": 4,
             "IFLA_VF_STATS_RX_DROPPED": 5, "IFLA_VF_STATS_TX_DROPPED": 6}
    report = [{"IFLA_VF_MAC": {"vf": 0, "mac": "00:00:00:00:00:00"}, "IFLA_VF_STATS": stats},
              {"IFLA_VF_MAC": {"vf": 1, "mac": "00:00:00:00:00:00"}, "IFLA_VF_STATS": {}}]
    assert parse_vfinfo(report) == {
        0: {"rx_bytes": 10, "tx_bytes": 20, "rx_packets": 1, "tx_packets": 2, "rx_dropped": 5, "tx_dropped": 6,
            "rx_broadcast": 3, "rx_multicast": 4},
        1: dict.fromkeys(("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "rx_dropped", "tx_dropped",
                          "rx_broadcast", "rx_multicast"), 0),
    }
    assert parse_vfinfo([{"IFLA_VF_MAC": {"vf": 0, "mac": "00:00:00:00:00:00"}}]) == (
        "the PF driver reports no VF statistics (IFLA_VF_STATS)")


def test_reading_vf_stats_of_netdevs_that_are_no_pf_gives_reasons_not_errors() -> None:
    from vfplugin.vfstats import read

    found = read(["lo", "vfplugin-no-such0"])
    assert found == {"lo": "the PF reports no VFs over netlink",
                     "vfplugin-no-such0": "no netdev vfplugin-no-such0 in this network namespace"}
