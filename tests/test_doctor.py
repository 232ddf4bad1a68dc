"""vfctl doctor reports each planted problem of the fixture hosts with the command that fixes it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES, ROOT
from tests.hosts import host_root, write_config
from vfplugin.checks import FAIL, OK, WARN, Check
from vfplugin.config import Config, load
from vfplugin.doctor import (
    checks,
    config_check,
    hook_checks,
    iommu_checks,
    ledger_check,
    pf_checks,
    running_daemons,
    vfio_check,
)
from vfplugin.inventory import VfInfo
from vfplugin.pciids import PciIds
from vfplugin.sysfs import Sysfs

pytestmark = pytest.mark.fixtures

PCIIDS = PciIds(FIXTURES / "pci.ids")
# btime of the fake /proc. A hook that install_hook writes is put in place now (its ctime, which doctor
# trusts over a package's mtime), so the fake clock has "now" at BOOT + 500, where the hook is installed.
BOOT = int(time.time()) - 500
TICKS = os.sysconf("SC_CLK_TCK")


def by_name(results: Sequence[Check]) -> dict[str, Check]:
    return {c.name: c for c in results}


def host_checks(tmp_path: Path, host: str, **kwargs: Any) -> dict[str, Check]:
    config = load(str(write_config(tmp_path, host)))
    kwargs.setdefault("hooks_dir", tmp_path / "hooks")
    kwargs.setdefault("proc", tmp_path / "proc")
    kwargs.setdefault("module_available", lambda module: False)
    kwargs.setdefault("extra", ())
    return by_name(checks(config, pciids=PCIIDS, **kwargs))


def fake_proc(tmp_path: Path, daemons: dict[int, tuple[str, float]]) -> Path:
    """A /proc with btime and, per pid, comm and a stat line whose field 22 is the start time in ticks."""
    proc = tmp_path / "proc"
    proc.mkdir(exist_ok=True)
    (proc / "stat").write_text(f"cpu  1 2 3 4\nbtime {BOOT}\nprocesses 100\n")
    for pid, (name, started) in daemons.items():
        (proc / str(pid)).mkdir()
        (proc / str(pid) / "comm").write_text(name + "\n")
        ticks = int((started - BOOT) * TICKS)
        fields = ["S"] + ["0"] * 18 + [str(ticks)] + ["0"] * 10  # state is field 3, starttime field 22
        (proc / str(pid) / "stat").write_text(f"{pid} ({name}) {' '.join(fields)}\n")
    (proc / "1").mkdir(exist_ok=True)
    (proc / "1" / "comm").write_text("systemd\n")
    return proc


def install_hook(hooks_dir: Path, mtime: float, mode: int = 0o755) -> Path:
    hooks_dir.mkdir(parents=True, exist_ok=True)
    hook = hooks_dir / "vfplugin"
    hook.write_text("#!/usr/bin/python3\n")
    hook.chmod(mode)
    os.utime(hook, (mtime, mtime))
    return hook


# --- the fixture hosts ---------------------------------------------------------------------------------


def test_example_host_sysfs_checks_pass(tmp_path: Path) -> None:
    results = host_checks(tmp_path, "example")
    for name in ("configuration file", "IOMMU on the kernel command line", "IOMMU groups",
                 "vfio-pci available", "PF eth2", "PF eth3", "ledger writable"):
        assert results[name].status == OK, results[name].line()
    assert results["PF eth2"].detail == (
        "0000:0a:00.0 I350 Gigabit Network Connection (igb): 4 of 7 VFs")
    assert results["IOMMU groups"].detail == "10 in /sys/kernel/iommu_groups"


def test_intel_host_reports_the_pf_without_vfs_with_the_fix(tmp_path: Path) -> None:
    results = host_checks(tmp_path, "intel")
    check = results["PF ens1f1"]
    assert check.status == FAIL and check.fix == "vfctl pf set-vfs ens1f1 64"
    assert check.line() == (
        "fail  PF ens1f1: 0000:81:00.1 Ethernet Controller X710 for 10GbE SFP+ (i40e): 0 of 64 VFs created"
        "  -> fix: vfctl pf set-vfs ens1f1 64")
    assert [results[f"PF {pf}"].status for pf in ("enp1s0f0", "ens1f0", "ens2f0")] == [OK, OK, OK]


def test_noiommu_host_reports_iommu_vfio_and_the_missing_pf(tmp_path: Path) -> None:
    results = host_checks(tmp_path, "noiommu")
    assert results["IOMMU on the kernel command line"].status == FAIL
    assert "intel_iommu=on" in results["IOMMU on the kernel command line"].fix
    assert "update-grub" in results["IOMMU on the kernel command line"].fix
    assert results["IOMMU groups"].status == FAIL
    assert results["vfio-pci available"].status == FAIL
    assert "modprobe vfio-pci" in results["vfio-pci available"].fix
    assert results["PF eth9"].status == FAIL and "sriov_nics" in results["PF eth9"].fix
    assert results["PF eth0"].status == OK


def test_not_sriov_capable_pf(tmp_path: Path) -> None:
    config = load(str(write_config(tmp_path, "intel", sriov_nics=["eno1"], pools=None)))
    [check] = pf_checks(config, Sysfs(config.sysfs_root), PCIIDS)
    assert check.status == FAIL
    assert check.detail == "0000:05:00.0: no SR-IOV capability (no sriov_totalvfs)"
    assert check.fix.startswith("remove eno1 from ")


def test_no_pf_configured_is_a_warning() -> None:
    [check] = pf_checks(Config(), Sysfs(Path("/nonexistent")), PCIIDS, Path("/etc/vfplugin/vfplugin.yaml"))
    assert check.status == WARN and check.fix == "add 'sriov_nics: [ethX]' to /etc/vfplugin/vfplugin.yaml"


def test_missing_configuration_file_is_a_notice() -> None:
    check = config_check(Config(), Path("/etc/vfplugin/vfplugin.yaml"))
    assert check.status == WARN
    assert check.detail == "no /etc/vfplugin/vfplugin.yaml: defaults in force, no PF managed"


# --- IOMMU ---------------------------------------------------------------------------------------------


def iommu_host(tmp_path: Path, cmdline: str, groups: int) -> Sysfs:
    (tmp_path / "proc").mkdir(exist_ok=True)
    (tmp_path / "proc" / "cmdline").write_text(cmdline + "\n")
    for n in range(groups):
        (tmp_path / "sys" / "kernel" / "iommu_groups" / str(n) / "devices").mkdir(parents=True)
    return Sysfs(tmp_path)


@pytest.mark.parametrize(
    "cmdline, groups, status",
    [
        ("ro quiet intel_iommu=on iommu=pt", 3, OK),
        ("ro amd_iommu=on iommu=pt", 3, OK),
        ("ro intel_iommu=on,sm_on iommu=pt", 3, OK),
        ("ro intel_iommu=on", 3, WARN),  # works, but without passthrough the host's own DMA is translated
        ("ro quiet", 3, WARN),  # AMD: on by default
        ("ro quiet", 0, FAIL),
        ("ro intel_iommu=off", 3, FAIL),
        ("ro iommu=off", 0, FAIL),
    ],
)
def test_iommu_command_line(tmp_path: Path, cmdline: str, groups: int, status: str) -> None:
    line, group_line = iommu_checks(iommu_host(tmp_path, cmdline, groups))
    assert line.status == status, line.line()
    assert group_line.status == (OK if groups else FAIL)


def test_vfio_from_the_driver_directory_or_the_module() -> None:
    assert vfio_check(Sysfs(host_root("example")), lambda m: False).status == OK
    assert vfio_check(Sysfs(host_root("noiommu")), lambda m: m == "vfio-pci").status == OK
    assert vfio_check(Sysfs(host_root("noiommu")), lambda m: False).status == FAIL


# --- hook and daemon -----------------------------------------------------------------------------------


def test_hook_not_installed(tmp_path: Path) -> None:
    [check] = hook_checks(tmp_path / "hooks", fake_proc(tmp_path, {}))
    assert check.status == FAIL and check.fix == "vfctl install-hook"


def test_hook_not_executable(tmp_path: Path) -> None:
    hook = install_hook(tmp_path / "hooks", BOOT + 100, mode=0o644)
    [check] = hook_checks(tmp_path / "hooks", fake_proc(tmp_path, {}))
    assert check.status == FAIL and check.fix == f"chmod 0755 {hook}"


def test_daemon_started_before_the_hook_must_be_restarted(tmp_path: Path) -> None:
    install_hook(tmp_path / "hooks", BOOT + 500)
    proc = fake_proc(tmp_path, {812: ("libvirtd", BOOT + 60)})
    hook, daemon = hook_checks(tmp_path / "hooks", proc)
    assert hook.status == OK
    assert daemon.status == FAIL and daemon.fix == "systemctl restart libvirtd"
    assert "pid 812" in daemon.detail


def test_daemon_started_after_the_hook_is_fine(tmp_path: Path) -> None:
    install_hook(tmp_path / "hooks", BOOT + 500)
    proc = fake_proc(tmp_path, {990: ("virtqemud", BOOT + 900)})
    _, daemon = hook_checks(tmp_path / "hooks", proc)
    assert daemon.status == OK and daemon.detail == "virtqemud (pid 990)"


def test_modular_daemon_gets_its_own_restart_command(tmp_path: Path) -> None:
    install_hook(tmp_path / "hooks", BOOT + 500)
    proc = fake_proc(tmp_path, {990: ("virtqemud", BOOT + 100)})
    _, daemon = hook_checks(tmp_path / "hooks", proc)
    assert daemon.fix == "systemctl restart virtqemud"


def test_no_daemon_running_is_a_warning(tmp_path: Path) -> None:
    install_hook(tmp_path / "hooks", BOOT + 500)
    _, daemon = hook_checks(tmp_path / "hooks", fake_proc(tmp_path, {}))
    assert daemon.status == WARN and daemon.fix == "systemctl start libvirtd"


def test_running_daemons_reads_start_times(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {812: ("libvirtd", BOOT + 60), 990: ("virtqemud", BOOT + 90)})
    assert running_daemons(proc) == [("libvirtd", 812, BOOT + 60), ("virtqemud", 990, BOOT + 90)]


def test_a_zombie_daemon_is_not_running(tmp_path: Path) -> None:
    """A libvirtd that exited and waits to be reaped runs no hook: no 'restart it' for that one."""
    proc = fake_proc(tmp_path, {812: ("libvirtd", BOOT + 60), 990: ("virtqemud", BOOT + 90)})
    stat = proc / "812" / "stat"
    stat.write_text(stat.read_text().replace("(libvirtd) S ", "(libvirtd) Z "))
    assert running_daemons(proc) == [("virtqemud", 990, BOOT + 90)]


# --- ledger --------------------------------------------------------------------------------------------


def test_ledger_path_that_can_be_created(tmp_path: Path) -> None:
    check = ledger_check(Config(ledger=tmp_path / "new" / "dir" / "ledger.sqlite3"))
    assert check.status == OK and check.detail.endswith("(created on first use)")


def test_existing_ledger_is_writable(tmp_path: Path) -> None:
    (tmp_path / "ledger.sqlite3").write_bytes(b"")
    assert ledger_check(Config(ledger=tmp_path / "ledger.sqlite3")).status == OK


def test_ledger_below_a_file_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("")
    check = ledger_check(Config(ledger=tmp_path / "plain" / "vfplugin" / "ledger.sqlite3"))
    assert check.status == FAIL and check.detail.endswith(f"{tmp_path / 'plain'} is not a directory")


# --- area checks and the command ---------------------------------------------------------------------


def test_offload_checks_are_appended_only_for_offload_pfs(tmp_path: Path) -> None:
    seen: list[tuple[tuple[str, ...], int]] = []

    def offload(config: Config, vfs: Sequence[VfInfo]) -> list[Check]:
        seen.append((config.ovs_offload_nics, len(vfs)))
        return [Check("eswitch mode of eth3", OK, "switchdev")]

    results = list(host_checks(tmp_path, "example", extra=(offload,)).values())
    assert results[-1].name == "eswitch mode of eth3" and seen == [(("eth3",), 8)]
    seen.clear()
    config = load(str(write_config(tmp_path, "intel")))
    checks(config, pciids=PCIIDS, hooks_dir=tmp_path, proc=tmp_path, extra=(offload,))
    assert seen == []


def test_an_area_check_that_fails_to_run_is_one_fail_line(tmp_path: Path) -> None:
    from vfplugin.errors import CommandFailed

    def offload_checks(config: Config, vfs: Sequence[VfInfo]) -> list[Check]:
        raise CommandFailed(argv="devlink dev", status="timeout", stderr="no answer within 5s")

    results = list(host_checks(tmp_path, "example", extra=(offload_checks,)).values())
    assert results[-1] == Check("offload_checks", FAIL, "devlink dev failed (timeout): no answer within 5s")
    assert results[-2].name == "ledger writable"


def vfctl_doctor(config: Path, hooks_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vfplugin.cli", "--config", str(config), "doctor",
         "--hooks-dir", str(hooks_dir)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )


def test_vfctl_doctor_exits_0_when_nothing_fails(tmp_path: Path) -> None:
    # The hook is older than any daemon that may run on this machine, so only ok/warn lines can come out.
    install_hook(tmp_path / "hooks", 0)
    config = write_config(tmp_path, "example", sriov_nics=["eth2", "eth3"], ovs_offload_nics=None)
    result = vfctl_doctor(config, tmp_path / "hooks")
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert lines[-1] == "no check failed"
    assert all(line.split()[0] in (OK, WARN) for line in lines[:-1])
    assert "ok    PF eth3: 0000:3b:00.0 ConnectX-5 (mlx5_core): 4 of 8 VFs" in lines


def test_vfctl_doctor_exits_1_and_prints_each_fix(tmp_path: Path) -> None:
    result = vfctl_doctor(write_config(tmp_path, "noiommu"), tmp_path / "hooks")
    assert result.returncode == 1
    assert "fail  qemu hook: " in result.stdout and "-> fix: vfctl install-hook" in result.stdout
    assert "fail  PF eth9: no such netdev on this host" in result.stdout
    assert result.stdout.splitlines()[-1].endswith("check(s) failed")
