"""Host readiness checks for ``vfctl doctor``: one ``Check`` per fact, each failure with its fixing command.

Covers DESIGN.md section 7: configuration file, IOMMU (kernel command line and populated groups), vfio-pci,
each configured PF (present, SR-IOV capable, with VFs), the qemu hook installed and the libvirt daemon
started after it, and the ledger path. The area checks of other modules (OVS offload, from switchdev.py) are
appended in ``checks``. Every place it reads is a parameter (sysfs root, /proc, hook directory), so tests
point it at fixtures. It only reads: it must never change the host, only say what to run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

from . import DEFAULT_CONFIG, HOOK_NAME, QEMU_HOOKS
from .checks import FAIL, OK, WARN, Check
from .config import DEFAULT_LEDGER, Config
from .errors import HostError, PfNotFound, PfNotPci, PfNotSriov, VfpluginError
from .inventory import VfInfo, discover
from .pciids import PciIds
from .sysfs import Sysfs

DAEMONS = ("libvirtd", "virtqemud")  # monolithic daemon, or the modular one that runs qemu hooks
GRUB_FIX = (
    "add 'intel_iommu=on iommu=pt' (AMD: 'iommu=pt') to GRUB_CMDLINE_LINUX in /etc/default/grub, "
    "then run 'update-grub' and reboot"
)

ExtraChecks = Callable[[Config, Sequence[VfInfo]], "list[Check]"]


def config_check(config: Config, looked_at: Path = Path(DEFAULT_CONFIG)) -> Check:
    """A missing file is not an error (defaults apply) but worth a notice: nothing is managed then."""
    name = "configuration file"
    if config.source is None:
        return Check(name, WARN, f"no {looked_at}: defaults in force, no PF managed",
                     f"create {looked_at} with at least 'sriov_nics: [ethX]'")
    return Check(name, OK, str(config.source))


def iommu_checks(sysfs: Sysfs) -> list[Check]:
    """The command line asks for the IOMMU (and passthrough mode), and the kernel made IOMMU groups."""
    try:
        cmdline = (Path(sysfs.root) / "proc" / "cmdline").read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        cmdline = []
    groups_dir = Path(sysfs.sys) / "kernel" / "iommu_groups"
    try:
        groups = len(os.listdir(groups_dir))
    except OSError:
        groups = 0
    params = {arg.partition("=")[0]: arg.partition("=")[2] for arg in cmdline}
    off = "off" in (params.get("intel_iommu"), params.get("amd_iommu"), params.get("iommu"))
    # AMD IOMMUs are on by default (amd_iommu= only tunes them); Intel needs intel_iommu=on on most kernels.
    asked = params.get("intel_iommu", "").startswith("on") or ("amd_iommu" in params and not off)
    passthrough = params.get("iommu") == "pt"

    name = "IOMMU on the kernel command line"
    if off:
        line = Check(name, FAIL, "the IOMMU is switched off on the kernel command line", GRUB_FIX)
    elif asked and passthrough:
        shown = " ".join(a for a in cmdline if a.startswith(("intel_iommu", "amd_iommu", "iommu=")))
        line = Check(name, OK, shown)
    elif asked:
        line = Check(name, WARN, "no iommu=pt: host DMA goes through the IOMMU too (slower)", GRUB_FIX)
    elif groups:
        line = Check(name, WARN, "neither intel_iommu=on nor amd_iommu, but the IOMMU is on (a default?)",
                     GRUB_FIX)
    else:
        line = Check(name, FAIL, "neither intel_iommu=on nor amd_iommu", GRUB_FIX)
    if groups:
        group_line = Check("IOMMU groups", OK, f"{groups} in /sys/kernel/iommu_groups")
    else:
        group_line = Check("IOMMU groups", FAIL, "/sys/kernel/iommu_groups is empty: no VF can be assigned",
                           "enable VT-d/AMD-Vi in the firmware and " + GRUB_FIX)
    return [line, group_line]


def _modinfo(module: str) -> bool:
    from .errors import VfpluginError
    from .run import run

    try:
        run(["modinfo", "-n", module], timeout=5.0)
    except VfpluginError:
        return False
    return True


def vfio_check(sysfs: Sysfs, module_available: Callable[[str], bool] = _modinfo) -> Check:
    name = "vfio-pci available"
    if (Path(sysfs.sys) / "bus" / "pci" / "drivers" / "vfio-pci").is_dir():
        return Check(name, OK, "driver loaded")
    if module_available("vfio-pci"):
        return Check(name, OK, "module present (libvirt loads it on the first start)")
    return Check(name, FAIL, "no vfio-pci driver loaded and no module found",
                 "install the distribution kernel's modules (Debian: apt install linux-image-amd64), "
                 "then 'modprobe vfio-pci'")


def pf_checks(
    config: Config, sysfs: Sysfs, pciids: PciIds, looked_at: Path = Path(DEFAULT_CONFIG)
) -> list[Check]:
    """One line per managed PF: present, SR-IOV capable, with VFs."""
    where = config.source or looked_at
    if not config.managed_pfs:
        return [Check("PFs", WARN, "no PF in sriov_nics or ovs_offload_nics",
                      f"add 'sriov_nics: [ethX]' to {where}")]
    out = []
    for name in config.managed_pfs:
        label = f"PF {name}"
        try:
            pf = sysfs.pf(name)
        except PfNotFound:
            out.append(Check(label, FAIL, "no such netdev on this host",
                             f"fix sriov_nics/ovs_offload_nics in {where} ('ip -br link' lists the netdevs)"))
            continue
        except PfNotPci:
            out.append(Check(label, FAIL, "not a PCI device (a bridge, bond, veth...)",
                             f"name the physical NIC in {where} ('ip -d link show {name}')"))
            continue
        except PfNotSriov as e:
            address = e.kwargs.get("address")
            out.append(Check(label, FAIL, f"{address}: no SR-IOV capability (no sriov_totalvfs)",
                             f"remove {name} from {where}, or enable SR-IOV in the firmware"))
            continue
        except HostError as e:
            out.append(Check(label, FAIL, str(e)))
            continue
        model = pciids.model(pf.vendor_id, pf.device_id)
        facts = f"{pf.address} {model} ({pf.driver or 'no driver'})"
        if not pf.vfs:
            out.append(Check(label, FAIL, f"{facts}: 0 of {pf.total_vfs} VFs created",
                             f"vfctl pf set-vfs {name} {pf.total_vfs}"))
        else:
            out.append(Check(label, OK, f"{facts}: {len(pf.vfs)} of {pf.total_vfs} VFs"))
    return out


def hook_checks(hooks_dir: Path = Path(QEMU_HOOKS), proc: Path = Path("/proc")) -> list[Check]:
    """The hook is installed and executable, and the daemon that runs it started after it was installed."""
    hook = hooks_dir / HOOK_NAME
    try:
        installed = hook.stat()
    except OSError:
        return [Check("qemu hook", FAIL, f"{hook} is not installed", "vfctl install-hook")]
    if not os.access(hook, os.X_OK):
        return [Check("qemu hook", FAIL, f"{hook} is not executable", f"chmod 0755 {hook}")]
    out = [Check("qemu hook", OK, str(hook))]
    daemons = running_daemons(proc)
    if not daemons:
        out.append(Check("libvirt daemon", WARN, f"neither {' nor '.join(DAEMONS)} is running",
                         "systemctl start libvirtd"))
        return out
    # ctime, not only mtime: dpkg and rpm give installed files the package's mtime, but ctime is when the
    # file was put in place.
    put_in_place = max(installed.st_mtime, installed.st_ctime)
    stale = [(name, pid) for name, pid, started in daemons
             if started is not None and started < put_in_place]
    if stale:
        name, pid = stale[0]
        out.append(Check("libvirt daemon", FAIL,
                         f"{name} (pid {pid}) started before the hook was installed, so it does not run it",
                         f"systemctl restart {name}"))
    else:
        out.append(Check("libvirt daemon", OK, ", ".join(f"{n} (pid {p})" for n, p, _ in daemons)))
    return out


def running_daemons(proc: Path = Path("/proc")) -> list[tuple[str, int, float | None]]:
    """(name, pid, start time as epoch seconds or None) of the libvirt daemons in ``proc``."""
    boot_time = _boot_time(proc)
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    found = []
    for entry in os.listdir(proc) if proc.is_dir() else []:
        if not entry.isdigit():
            continue
        try:
            comm = (proc / entry / "comm").read_text().strip()
            if comm not in DAEMONS:
                continue
            stat = (proc / entry / "stat").read_text()
        except OSError:
            continue
        # Field 22 (starttime, clock ticks after boot) counts from after the ")" that ends the command name,
        # which may itself contain spaces or parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields and fields[0] == "Z":
            continue  # a zombie waiting to be reaped runs no hook
        started = None
        if boot_time is not None and len(fields) > 19 and fields[19].isdigit():
            started = boot_time + int(fields[19]) / ticks
        found.append((comm, int(entry), started))
    return sorted(found, key=lambda item: item[1])


def _boot_time(proc: Path) -> float | None:
    try:
        for line in (proc / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def ledger_check(config: Config) -> Check:
    """The ledger file is writable, or can be created (its nearest existing ancestor is writable)."""
    path = Path(config.ledger)
    name = "ledger writable"
    if path.exists():
        if os.access(path, os.R_OK | os.W_OK):
            return Check(name, OK, str(path))
        return Check(name, FAIL, f"{path} is not writable by this user",
                     f"run vfctl as root, or: chmod 0600 {path}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return Check(name, FAIL, f"cannot create {path}: {parent} is not a directory",
                     f"set 'ledger:' in the configuration to a path in a directory, e.g. {DEFAULT_LEDGER}")
    if os.access(parent, os.W_OK | os.X_OK):
        return Check(name, OK, f"{path} (created on first use)")
    return Check(name, FAIL, f"cannot create {path}: {parent} is not writable",
                 f"install -d -m 0700 {path.parent} (as root)")


def agent_checks(config: Config) -> list[Check]:
    """vfplugind: whether it runs for this ledger, and each request it journaled as unsatisfiable (latest word)."""
    from . import agentpid
    from .ledger import Ledger, exists
    from .startable import ACTIONS, pending

    if agentpid.running(config.ledger):
        out = [Check("vfplugind", OK, f"running ({agentpid.path(config.ledger)})")]
    else:
        out = [Check("vfplugind", WARN, "not running: a domain defined with plain virsh gets no VF, and a stopped "
                     "one whose VF was taken is not re-pointed (vfctl start still chooses)",
                     "systemctl start vfplugind (or run vfplugind in the foreground)")]
    try:
        if not exists(config.ledger):
            return out
        with Ledger.open(config.ledger, ttl=config.reservation_ttl, create=False) as ledger:
            waiting = pending(ledger.history(actions=ACTIONS))
    except VfpluginError as e:
        return out + [Check("vfplugind requests", WARN, str(e))]
    for event in waiting.values():
        out.append(Check(f"domain {getattr(event, 'domain_name', '?')}", WARN,
                         f"no VF: {getattr(event, 'detail', '')}",
                         "free a VF of its pool or change its request (vfctl explain)"))
    return out


def _offload_checks(config: Config, vfs: Sequence[VfInfo]) -> list[Check]:
    from .switchdev import offload_checks  # devlink/ethtool/ovs-vsctl: only when there is offload to check

    return offload_checks(config, vfs)


def checks(
    config: Config,
    *,
    sysfs: Sysfs | None = None,
    pciids: PciIds | None = None,
    hooks_dir: Path = Path(QEMU_HOOKS),
    proc: Path = Path("/proc"),
    module_available: Callable[[str], bool] = _modinfo,
    extra: Sequence[ExtraChecks] = (_offload_checks,),
    config_path: Path = Path(DEFAULT_CONFIG),
) -> list[Check]:
    """Every doctor line, in the order printed. ``extra``: area checks appended at the end (OVS offload)."""
    sysfs = sysfs or Sysfs(config.sysfs_root)
    pciids = pciids or PciIds()
    out = [config_check(config, config_path)]
    out += iommu_checks(sysfs)
    out.append(vfio_check(sysfs, module_available))
    out += pf_checks(config, sysfs, pciids, config_path)
    if config.host_pfs:  # vfs/eswitch in the configuration: does the host still match it? (hoststate.py)
        from .hoststate import drift, read_state

        out += drift(config, {pf: read_state(config, pf) for pf in config.host_pfs})
    out += hook_checks(hooks_dir, proc)
    out.append(ledger_check(config))
    # Area checks from other modules go here: each gets the configuration and the discovered VFs.
    if config.ovs_offload_nics:
        vfs = discover(config, sysfs, pciids).vfs
        for area in extra:
            try:
                out += area(config, vfs)
            except VfpluginError as e:  # one area that cannot look must not hide the other lines
                out.append(Check(getattr(area, "__name__", "area checks").strip("_"), FAIL, str(e)))
    return out
