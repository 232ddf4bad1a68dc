"""Tier 5: a real libvirtd (Debian's libvirt-daemon-system) running the installed hook.

The tests install the hook into /etc/libvirt/hooks/qemu.d/ and write /etc/vfplugin/vfplugin.yaml (pointing at the
example fixture host, ledger in a temporary directory) BEFORE they start ``virtlogd --daemon`` and
``libvirtd --daemon`` (libvirt finds hooks when it starts); both files are put back afterwards. With
VFPLUGIN_INSTALLED=1 (after the .deb is installed) they use the packaged hook and /usr/bin/vfctl instead.

There is no SR-IOV hardware here, so a managed domain's start runs ``prepare begin`` (claim) and then fails at
device set-up ("host doesn't support passthrough of host PCI devices"), after which libvirt runs
``stopped end`` and ``release end``: exactly the path that must claim, refuse and release correctly.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root, require_tool
from tests.hookrun import domain_xml, hostdev_interface, vfctl
from tests.hosts import write_config
from vfplugin.hook import script
from vfplugin.ledger import Ledger, Want

pytestmark = pytest.mark.libvirt

HOOK = Path("/etc/libvirt/hooks/qemu.d/vfplugin")
CONFIG = Path("/etc/vfplugin/vfplugin.yaml")
URI = "qemu:///system"
PREFIX = "vfpt-"
INSTALLED = os.environ.get("VFPLUGIN_INSTALLED") == "1"


def virsh(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True, timeout=120, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"virsh {' '.join(args)}: {done.stderr}")
    return done


def _pid(pidfile: str) -> int | None:
    try:
        pid = int(Path(pidfile).read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


def _gone(pid: int) -> bool:
    """The process has exited, or is a zombie (it runs nothing any more)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2 :].startswith("Z")


def _stop(pidfile: str) -> None:
    """Stop the daemon and wait for the process itself: libvirtd removes its pid file before it has exited,
    and a test that follows (vfctl doctor's daemon check) must not find it still shutting down."""
    pid = _pid(pidfile)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if _gone(pid):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        if _gone(pid):
            return
        time.sleep(0.1)


def start_libvirtd() -> None:
    _stop("/run/libvirtd.pid")  # a daemon started before the hook was installed would not know it
    if _pid("/run/virtlogd.pid") is None:
        subprocess.run(["virtlogd", "--daemon"], check=True, timeout=30)
    subprocess.run(["libvirtd", "--daemon"], check=True, timeout=30)
    deadline = time.monotonic() + 60
    while virsh("version").returncode != 0:
        assert time.monotonic() < deadline, "libvirtd did not answer within 60 s"
        time.sleep(0.3)


def cleanup_domains() -> None:
    names = virsh("list", "--all", "--name").stdout.split()
    for name in (n for n in names if n.startswith(PREFIX)):
        virsh("destroy", name)
        virsh("undefine", name)


@pytest.fixture(scope="module")
def daemon() -> Iterator[Path]:
    """A libvirtd that knows the vfplugin hook; yields the fixture host's configuration path."""
    require_root()
    require_tool("libvirtd", "virtlogd", "virsh", "qemu-system-x86_64")
    work = Path(tempfile.mkdtemp(prefix="vfplugin-libvirt-"))
    os.chmod(work, 0o755)
    saved = {}
    for path in (HOOK, CONFIG):
        if INSTALLED and path == HOOK:
            continue  # the packaged hook is the thing under test
        if path.is_symlink() or path.exists():  # moved aside as it is (the package may ship a symlink)
            # to the parent of qemu.d: libvirt would run any executable left inside qemu.d
            saved[path] = path.parent.parent / f"{path.name}.saved-by-vfplugin-tests"
            os.rename(path, saved[path])
    try:
        source = write_config(work, ovs_offload_nics=[], pools={"i350": {"pfs": ["eth2"]}})
        CONFIG.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, CONFIG)
        if not INSTALLED:
            HOOK.parent.mkdir(parents=True, exist_ok=True)
            HOOK.write_text(script(_venv_python()))
            HOOK.chmod(0o755)
        assert os.access(HOOK, os.X_OK), f"{HOOK} is not installed"
        start_libvirtd()
        cleanup_domains()
        yield CONFIG
    finally:
        cleanup_domains()
        _stop("/run/libvirtd.pid")
        for path in (HOOK, CONFIG):
            if INSTALLED and path == HOOK:
                continue
            path.unlink(missing_ok=True)
            if path in saved:
                os.rename(saved[path], path)
        shutil.rmtree(work, ignore_errors=True)


def _venv_python() -> str:
    import sys

    return sys.executable


@pytest.fixture
def ledger_path(daemon: Path) -> Iterator[Path]:
    """The ledger of the daemon's configuration, emptied for each test."""
    import yaml

    path = Path(yaml.safe_load(daemon.read_text())["ledger"])
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    yield path
    cleanup_domains()


def leases(path: Path) -> list:
    with Ledger.open(path) as ledger:
        return ledger.leases()


def define(tmp_path: Path, name: str, nics: str = "", devices: str = "") -> str:
    source = tmp_path / f"{name}.xml"
    source.write_text(domain_xml(name, nics=nics, devices=devices))
    done = vfctl("define", str(source)) if nics else virsh("define", str(source))
    assert done.returncode == 0, done.stderr
    return source.read_text()


def test_unmanaged_domain_starts_and_stops_normally(daemon, ledger_path, tmp_path):
    define(tmp_path, f"{PREFIX}plain")
    virsh("start", f"{PREFIX}plain", check=True)
    assert virsh("domstate", f"{PREFIX}plain").stdout.strip() == "running"
    virsh("destroy", f"{PREFIX}plain", check=True)
    assert not ledger_path.exists()  # the hook let it through without even opening the ledger


def test_start_claims_at_prepare_and_release_frees_after_a_failed_start(daemon, ledger_path, tmp_path):
    name = f"{PREFIX}web1"
    define(tmp_path, name, nics='<vfp:nic id="net0" pool="i350"/>')
    [reserved] = leases(ledger_path)
    assert (reserved.domain_name, reserved.state) == (name, "reserved")
    # the defined domain carries the materialized interface
    assert "ua-vfplugin-net0" in virsh("dumpxml", name).stdout
    started = virsh("start", name)
    assert started.returncode != 0
    assert "passthrough of host PCI devices" in started.stderr  # libvirt's own failure, after prepare
    assert leases(ledger_path) == []
    with Ledger.open(ledger_path) as ledger:
        actions = [(e.action, e.outcome) for e in ledger.history(domain=name)]
    assert ("claim", "ok") in actions and ("release", "ok") in actions


def test_start_of_a_domain_whose_vf_is_held_is_refused_with_vfplugins_line(daemon, ledger_path, tmp_path):
    name = f"{PREFIX}db1"
    define(tmp_path, name, devices=hostdev_interface("0000:0a:10.4"))
    with Ledger.open(ledger_path) as ledger:
        ledger.claim("11111111-2222-3333-4444-555555555555", "web1", [Want(vf="0000:0a:10.4", nic_id="net0")])
    started = virsh("start", name)
    assert started.returncode != 0
    assert (
        f"vfplugin: VF 0000:0a:10.4 is in use by domain \"web1\"; vfplugind is not running: "
        f"systemctl start vfplugind, or run 'vfctl start {name}'"
    ) in started.stderr  # with the agent running: tests/test_agent_libvirt.py
    [lease] = leases(ledger_path)  # the refused domain's release freed nothing of web1's
    assert (lease.domain_name, lease.state) == ("web1", "active")


def test_vfctl_start_rechooses_a_free_vf_when_the_one_defined_is_taken(daemon, ledger_path, tmp_path):
    name = f"{PREFIX}app"
    define(tmp_path, name, nics='<vfp:nic id="net0" pool="i350"/>')
    [mine] = leases(ledger_path)
    with Ledger.open(ledger_path) as ledger:
        ledger.release_vf(mine.vf, "test: let another domain take it")
        ledger.claim("11111111-2222-3333-4444-555555555555", "web1", [Want(vf=mine.vf, nic_id="net0")])
    done = vfctl("start", name)
    # no SR-IOV here: libvirt fails at device set-up, after vfplugin redefined the domain with another VF
    assert done.returncode != 0 and "passthrough of host PCI devices" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    bus, slot, fn = mine.vf[5:7], mine.vf[8:10], mine.vf[11]
    dumped = virsh("dumpxml", "--inactive", name).stdout
    assert "ua-vfplugin-net0" in dumped
    assert f"bus='0x{bus}' slot='0x{slot}' function='0x{fn}'" not in dumped
    assert [lease.domain_name for lease in leases(ledger_path)] == ["web1"]


def test_attach_and_detach_config_update_metadata_interface_and_ledger(daemon, ledger_path, tmp_path):
    name = f"{PREFIX}grow"
    define(tmp_path, name)
    done = vfctl("attach", name, "--pool", "i350", "--vlan", "100", "--config")
    assert done.returncode == 0, done.stderr
    dumped = virsh("dumpxml", "--inactive", name).stdout
    assert "urn:vfplugin:1" in dumped and "ua-vfplugin-net0" in dumped and "<tag id='100'/>" in dumped
    [lease] = leases(ledger_path)
    assert (lease.domain_name, lease.nic_id, lease.vlan) == (name, "net0", 100)
    done = vfctl("attach", name, "--pool", "i350", "--config")  # a second nic gets another VF
    assert done.returncode == 0, done.stderr
    held = {lease.nic_id: lease.vf for lease in leases(ledger_path)}
    assert set(held) == {"net0", "net1"} and held["net0"] != held["net1"]
    done = vfctl("detach", name, "--nic", "net1", "--config")
    assert done.returncode == 0, done.stderr
    done = vfctl("detach", name, "--nic", "net0", "--config")
    assert done.returncode == 0, done.stderr
    dumped = virsh("dumpxml", "--inactive", name).stdout
    assert "ua-vfplugin-net0" not in dumped and 'id="net0"' not in dumped and "id='net0'" not in dumped
    assert leases(ledger_path) == []


def test_libvirtd_restart_loses_no_lease_and_keeps_running_domains(daemon, ledger_path, tmp_path):
    define(tmp_path, f"{PREFIX}keep", nics='<vfp:nic id="net0" pool="i350"/>')
    define(tmp_path, f"{PREFIX}runner")
    virsh("start", f"{PREFIX}runner", check=True)
    with Ledger.open(ledger_path) as ledger:
        ledger.claim("11111111-2222-3333-4444-555555555555", "web1", [Want(vf="0000:0a:11.4", nic_id="net0")])
    before = {(lease.vf, lease.domain_name, lease.state) for lease in leases(ledger_path)}
    os.kill(_pid("/run/libvirtd.pid") or 0, signal.SIGKILL)
    time.sleep(0.5)
    start_libvirtd()
    assert virsh("domstate", f"{PREFIX}runner").stdout.strip() == "running"  # reconnect did not kill it
    assert {(lease.vf, lease.domain_name, lease.state) for lease in leases(ledger_path)} == before


def test_reconcile_releases_leases_of_domains_that_are_not_running(daemon, ledger_path, tmp_path):
    with Ledger.open(ledger_path) as ledger:
        ledger.claim("11111111-2222-3333-4444-555555555555", "gone", [Want(vf="0000:0a:11.0", nic_id="net0")])
    done = vfctl("reconcile")
    assert done.returncode == 0, done.stderr
    assert "released 0000:0a:11.0: domain gone is not running" in done.stdout
    assert done.stdout.rstrip().endswith("0 leaked")
    assert leases(ledger_path) == []
