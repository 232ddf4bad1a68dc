"""Tier 4: the qemu hook as a real process, the way libvirt runs it, on the example fixture host.

The example host (tests/fixtures/hosts/example) has eth2 (I350, VFs 0000:0a:10.0 0a:10.4 0a:11.0 0a:11.4) and
eth3 (ConnectX-5 switchdev, VFs 0000:3b:00.2-5). None of these PFs exists in this kernel, so requests here ask
for no netlink setting, except where a test checks how a refused setting is reported.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hookrun import LIFECYCLE, domain_xml, hostdev_interface, install, plain_hostdev, run_hook, vfctl
from tests.hosts import write_config
from vfplugin.ledger import Ledger

pytestmark = pytest.mark.hook

I350_VF = "0000:0a:10.0"
CX5_VF = "0000:3b:00.2"


@pytest.fixture
def host(tmp_path: Path) -> tuple[Path, Path]:
    """(hook, config) for the example host, with offload PFs left out so no OVS is needed here."""
    config = write_config(tmp_path, ovs_offload_nics=[], pools={"i350": {"pfs": ["eth2"]}})
    return install(tmp_path), config


def leases(config: Path) -> list:
    with Ledger.open(Path(str(config)).parent / "ledger.sqlite3") as ledger:
        return ledger.leases()


def rewritten(tmp_path: Path, config: Path, name: str, nics: str, reserve: bool = True) -> str:
    """The domain as `vfctl rewrite --reserve` makes it (what `vfctl define` would define)."""
    source = tmp_path / f"{name}.xml"
    source.write_text(domain_xml(name, nics=nics))
    done = vfctl("rewrite", *(["--reserve"] if reserve else []), str(source), config=config)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_unmanaged_domain_passes_every_operation_and_touches_nothing(host, tmp_path):
    hook, config = host
    xml = domain_xml("plain")
    for op, sub in LIFECYCLE + (("reconnect", "begin"), ("migrate", "begin"), ("restore", "begin")):
        result = run_hook(hook, "plain", op, sub, xml, config)
        assert (result.status, result.stdout, result.stderr) == (0, "", "")
    assert not (tmp_path / "ledger.sqlite3").exists()


def test_unmanaged_domain_passes_even_with_a_broken_configuration(host, tmp_path):
    hook, _ = host
    broken = tmp_path / "broken.yaml"
    broken.write_text("sriov_nics: eth2\nbogus: 1\n")
    xml = domain_xml("gpu", devices=plain_hostdev("0000:65:00.0"))
    assert run_hook(hook, "gpu", "prepare", "begin", xml, broken).status == 0


def test_managed_lifecycle_claims_at_prepare_and_releases_at_release(host, tmp_path):
    hook, config = host
    xml = rewritten(tmp_path, config, "web1", '<vfp:nic id="net0" pool="i350"/>')
    [reserved] = leases(config)
    assert reserved.state == "reserved" and reserved.domain_name == "web1"

    assert run_hook(hook, "web1", "prepare", "begin", xml, config).status == 0
    [active] = leases(config)
    assert (active.vf, active.state) == (reserved.vf, "active")
    assert run_hook(hook, "web1", "start", "begin", xml, config).status == 0
    assert run_hook(hook, "web1", "started", "begin", xml, config).status == 0
    assert leases(config)[0].started_at is not None
    assert run_hook(hook, "web1", "stopped", "end", xml, config).status == 0
    assert run_hook(hook, "web1", "release", "end", xml, config).status == 0
    assert leases(config) == []
    # idempotent: a second release (libvirt may call it for a start that failed) changes nothing
    assert run_hook(hook, "web1", "release", "end", xml, config).status == 0
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        actions = [e.action for e in ledger.history(domain="web1")]
    assert {"reserve", "claim", "release"} <= set(actions)


def test_prepare_refuses_a_vf_held_by_another_domain_with_one_line(host, tmp_path):
    hook, config = host
    web1 = rewritten(tmp_path, config, "web1", f'<vfp:nic id="net0" vf="{I350_VF}"/>')
    assert run_hook(hook, "web1", "prepare", "begin", web1, config).status == 0
    # db1 was written by hand to use the same VF (vfctl would have chosen another one)
    db1 = domain_xml("db1", devices=hostdev_interface(I350_VF))
    result = run_hook(hook, "db1", "prepare", "begin", db1, config)
    assert result.status == 1
    assert result.stderr == (
        f"vfplugin: VF {I350_VF} is in use by domain \"web1\"; vfplugind is not running: "
        "systemctl start vfplugind, or run 'vfctl start db1'\n"
    )
    # libvirt then runs stopped/release for the refused start: web1 must keep its VF
    for op, sub in (("stopped", "end"), ("release", "end")):
        assert run_hook(hook, "db1", op, sub, db1, config).status == 0
    [lease] = leases(config)
    assert (lease.vf, lease.domain_name, lease.state) == (I350_VF, "web1", "active")


def test_adopted_handwritten_hostdevs_are_claimed_like_managed_ones(host, tmp_path):
    hook, config = host
    hand = domain_xml("hand", devices=plain_hostdev(I350_VF))
    assert run_hook(hook, "hand", "prepare", "begin", hand, config).status == 0
    [lease] = leases(config)
    assert (lease.vf, lease.domain_name, lease.nic_id) == (I350_VF, "hand", None)
    other = domain_xml("other", devices=hostdev_interface(I350_VF))
    assert run_hook(hook, "other", "prepare", "begin", other, config).status == 1
    assert run_hook(hook, "hand", "release", "end", hand, config).status == 0
    assert leases(config) == []


def test_hostdev_outside_managed_pfs_is_not_ours(host):
    hook, config = host
    gpu = domain_xml("gpu", devices=plain_hostdev("0000:65:00.0") + plain_hostdev(CX5_VF))
    assert run_hook(hook, "gpu", "prepare", "begin", gpu, config).status == 0
    assert leases(config) == []


def test_request_without_a_chosen_vf_is_refused_with_the_fix(host):
    hook, config = host
    raw = domain_xml("fresh", nics='<vfp:nic id="net0" pool="i350"/>')
    result = run_hook(hook, "fresh", "prepare", "begin", raw, config)
    assert result.status == 1
    assert (
        "nic 'net0' has no VF chosen yet; vfplugind is not running: systemctl start vfplugind, "
        "or run 'vfctl start fresh'"
    ) in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_refused_setting_names_the_setting_and_leaves_no_lease(host, tmp_path):
    hook, config = host
    xml = rewritten(tmp_path, config, "trusty", '<vfp:nic id="net0" pool="i350" trust="on"/>')
    result = run_hook(hook, "trusty", "prepare", "begin", xml, config)
    assert result.status == 1
    assert result.stderr.startswith("vfplugin: cannot set trust=on on VF 0 of eth2: no netdev eth2")
    assert result.stderr.count("\n") == 1
    assert leases(config) == []


def test_reconnect_never_fails_even_when_the_ledger_disagrees(host, tmp_path):
    hook, config = host
    web1 = rewritten(tmp_path, config, "web1", f'<vfp:nic id="net0" vf="{I350_VF}"/>')
    assert run_hook(hook, "web1", "prepare", "begin", web1, config).status == 0
    intruder = domain_xml("intruder", devices=hostdev_interface(I350_VF))
    assert run_hook(hook, "intruder", "reconnect", "begin", intruder, config).status == 0
    assert run_hook(hook, "web1", "reconnect", "begin", web1, config).status == 0
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        assert any(e.action == "reconnect" and e.outcome == "inconsistent" for e in ledger.history())


def test_restore_rewrites_the_request_to_a_free_local_vf(host, tmp_path):
    hook, config = host
    web1 = rewritten(tmp_path, config, "web1", f'<vfp:nic id="net0" vf="{I350_VF}"/>')
    assert run_hook(hook, "web1", "prepare", "begin", web1, config).status == 0
    # a saved image of another domain that had the same VF on the host it was saved on
    image = domain_xml(
        "img",
        nics='<vfp:nic id="net0" pool="i350"/>',
        devices=hostdev_interface(I350_VF, "52:54:00:aa:00:01", nic_id="net0"),
    )
    result = run_hook(hook, "img", "restore", "begin", image, config)
    assert result.status == 0, result.stderr
    assert "ua-vfplugin-net0" in result.stdout and "52:54:00:aa:00:01" in result.stdout
    assert "bus='0x0a' slot='0x10' function='0x0'" not in result.stdout  # moved off web1's VF
    held = {lease.vf: lease for lease in leases(config)}
    assert held[I350_VF].domain_name == "web1"
    assert any(lease.domain_name == "img" and lease.state == "reserved" for lease in held.values())


def test_malformed_xml_refuses_only_domains_that_are_ours(host):
    hook, config = host
    ours = run_hook(
        hook, "x", "prepare", "begin", '<domain><metadata xmlns:v="urn:vfplugin:1"><oops></domain>', config
    )
    assert ours.status == 1 and ours.stderr.startswith("vfplugin: domain x:") and ours.stderr.count("\n") == 1
    theirs = run_hook(hook, "y", "prepare", "begin", "<domain><hostdev><oops></domain>", config)
    assert theirs.status == 0


def test_broken_configuration_refuses_a_managed_domain_naming_the_key(host, tmp_path):
    hook, config = host
    xml = rewritten(tmp_path, config, "web1", '<vfp:nic id="net0" pool="i350"/>')
    broken = tmp_path / "broken.yaml"
    broken.write_text("sriov_nics: [eth2]\nmac_prefix: 'zz'\n")
    result = run_hook(hook, "web1", "prepare", "begin", xml, broken)
    assert result.status == 1
    assert "mac_prefix" in result.stderr and result.stderr.count("\n") == 1


def test_corrupt_ledger_refuses_with_one_line_and_never_allocates(host, tmp_path):
    hook, config = host
    xml = rewritten(tmp_path, config, "web1", '<vfp:nic id="net0" pool="i350"/>')
    ledger = tmp_path / "ledger.sqlite3"
    for suffix in ("-wal", "-shm"):
        Path(str(ledger) + suffix).unlink(missing_ok=True)
    ledger.write_bytes(b"this is not a database" * 100)
    result = run_hook(hook, "web1", "prepare", "begin", xml, config)
    assert result.status == 1
    assert result.stderr.startswith(f"vfplugin: ledger {ledger}") and result.stderr.count("\n") == 1
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(ledger).execute("SELECT * FROM leases").fetchall()


def test_no_operation_ever_prints_a_traceback(host, tmp_path):
    hook, config = host
    inputs = [
        "",
        "<domain/>",
        "not xml at all hostdev",
        domain_xml("n", nics='<vfp:nic id="a" pool="nope"/>'),
    ]
    for xml in inputs:
        for op, sub in LIFECYCLE + (("reconnect", "begin"), ("migrate", "begin")):
            result = run_hook(hook, "n", op, sub, xml, config)
            assert "Traceback" not in result.stderr
            assert result.stderr.count("\n") <= 1


def test_release_gives_back_even_when_the_xml_is_unusable(host, tmp_path):
    hook, config = host
    xml = rewritten(tmp_path, config, "web1", '<vfp:nic id="net0" pool="i350"/>')
    assert run_hook(hook, "web1", "prepare", "begin", xml, config).status == 0
    uuid = xml.split("<uuid>")[1].split("</uuid>")[0]
    broken = f"<domain><name>web1</name><uuid>{uuid}</uuid><metadata xmlns:v='urn:vfplugin:1'><oops></domain>"
    assert run_hook(hook, "web1", "release", "end", broken, config).status == 0
    assert leases(config) == []


# What a managed start or stop must never import: each costs the hook 3-20 ms, on every start and stop of every
# vfplugin domain (bench/bench_hook.py). lxml is for migrate/restore only, PyYAML for a config cache miss only,
# pyroute2 for a VF with settings only; the rest are standard modules the hook's path is written without.
HEAVY = {"lxml", "yaml", "pyroute2", "dataclasses", "inspect", "ast", "typing", "pathlib", "re", "json", "enum"}


def imported_by_hook(op: str, sub: str, name: str, xml: str, config: Path) -> set[str]:
    """The top-level modules a hook run has loaded when it is done (the hook's code, in a fresh interpreter)."""
    probe = (
        "import sys\nfrom vfplugin.hook import main\n"
        f"status = main([{name!r}, {op!r}, {sub!r}, '-'])\n"
        "print(status, ' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    env = {"LC_ALL": "C", "PATH": "/usr/bin:/bin", "VFPLUGIN_CONFIG": str(config),
           "VFPLUGIN_CONFIG_CACHE": str(config.parent / "config-cache")}
    done = subprocess.run(
        [sys.executable, "-I", "-c", probe], input=xml.encode(), capture_output=True, env=env, check=True
    )
    status, modules = done.stdout.decode().split(" ", 1)
    assert status == "0", done.stderr
    return set(modules.split())


def test_a_managed_start_and_stop_import_nothing_heavy(host, tmp_path):
    _, config = host
    xml = rewritten(tmp_path, config, "web1", '<vfp:nic id="net0" pool="i350"/>')
    imported_by_hook("prepare", "begin", "web1", xml, config)  # the first run after an edit caches the config
    assert imported_by_hook("prepare", "begin", "web1", xml, config) & HEAVY == set()
    assert imported_by_hook("release", "end", "web1", xml, config) & HEAVY == set()
    assert leases(config) == []
