"""Host state that survives a reboot: vfio-pci loaded, each PF's VF count and eswitch mode, from the configuration.

The kernel forgets ``sriov_numvfs`` and the eswitch mode at every boot; ``vfs:`` and ``eswitch:`` in the
configuration say what they should be, ``vfctl host apply`` (run by the oneshot ``vfplugin-host.service``
before libvirtd/virtqemud and vfplugind) makes the host so, and ``vfctl doctor`` reports any drift.

``plan`` is pure: the configuration and what the host looks like now in, the ordered steps out. For a PF whose
eswitch mode must change, the steps follow the order mlx5/ice need (NVIDIA's "OVS offload using ASAP2
direct" and the kernel's switchdev documentation): create the VFs, unbind them from their driver, set the
mode through devlink, bind them again. ``apply`` carries the steps out through sysfs writes (under the
configured ``sysfs_root``, so tests write a fixture copy) and argv commands (``modprobe``, ``devlink``).
It never touches a PF the configuration does not name, and by default it refuses to change a PF whose VFs a
live lease holds (a running domain would lose its VF).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .checks import FAIL, OK, WARN, Check
from .config import Config
from .errors import HostError, VfpluginError

Runner = Callable[[Sequence[str]], Any]


@dataclass(frozen=True)
class PfState:
    """What the host shows of one PF now (``mode`` None: devlink could not tell)."""

    name: str
    address: str
    num_vfs: int
    total_vfs: int
    mode: str | None
    vf_drivers: tuple[tuple[str, str | None], ...] = ()  # (VF address, bound driver) in VF order


@dataclass(frozen=True)
class Step:
    """One change: ``kind`` "write" (``value`` to ``path``, relative to the sysfs root), "run" (``argv``), or
    "unbind"/"bind" (every VF of the PF bound to a host driver, from/to that driver)."""

    pf: str
    kind: str
    what: str  # one line for the operator
    path: str = ""
    value: str = ""
    argv: tuple[str, ...] = ()
    reread: bool = False  # after this step the PF's VFs are new: later steps name them from a fresh read


@dataclass
class Outcome:
    done: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


# --- pure ------------------------------------------------------------------------------------------------


def plan_pf(cfg: Config, pf: PfState, wanted_vfs: int | None, wanted_mode: str | None) -> list[Step]:
    """The steps that bring one PF to its configured VF count and eswitch mode (none when it is there)."""
    steps: list[Step] = []
    numvfs = f"sys/class/net/{pf.name}/device/sriov_numvfs"
    count = pf.num_vfs
    if wanted_vfs is not None and wanted_vfs != pf.num_vfs:
        if wanted_vfs > pf.total_vfs:
            raise HostError(problem=f"vfs.{pf.name}: PF {pf.name!r} supports at most {pf.total_vfs} VFs, "
                            f"not {wanted_vfs}; lower it in the configuration")
        if pf.num_vfs and wanted_vfs:
            # the kernel refuses one non-zero count over another (EBUSY): via 0 (PCI/pci-iov-howto)
            steps.append(Step(pf.name, "write", f"{pf.name}: remove its {pf.num_vfs} VFs (the count changes)",
                              path=numvfs, value="0"))
        steps.append(Step(pf.name, "write", f"{pf.name}: {pf.num_vfs} -> {wanted_vfs} VFs", path=numvfs,
                          value=str(wanted_vfs), reread=True))
        count = wanted_vfs
    if wanted_mode is not None and wanted_mode != pf.mode:
        if count:
            steps.append(Step(pf.name, "unbind", f"{pf.name}: unbind its VFs from their driver"))
        steps.append(Step(pf.name, "run", f"{pf.name}: eswitch {pf.mode or 'unknown'} -> {wanted_mode}",
                          argv=("devlink", "dev", "eswitch", "set", f"pci/{pf.address}", "mode", wanted_mode)))
        if count:
            steps.append(Step(pf.name, "bind", f"{pf.name}: bind its VFs to their driver again"))
    return steps


def drift(cfg: Config, states: Mapping[str, Any]) -> list[Check]:
    """doctor: one check per PF with host state in the configuration. ``states``: PF -> PfState or HostError."""
    checks = []
    vfs, modes = dict(cfg.vfs), dict(cfg.eswitch)
    fix = "vfctl host apply (what vfplugin-host.service runs at boot)"
    for pf in cfg.host_pfs:
        name = f"host state of {pf}"
        state = states.get(pf)
        if not isinstance(state, PfState):
            checks.append(Check(name, FAIL, str(state), "bring the PF up, or fix vfs/eswitch in the configuration"))
            continue
        problems, unknown = [], []
        if pf in vfs and vfs[pf] != state.num_vfs:
            problems.append(f"{state.num_vfs} VFs, the configuration says {vfs[pf]}")
        if pf in modes:
            if state.mode is None:
                unknown.append(f"eswitch mode unknown (devlink does not answer), the configuration says {modes[pf]}")
            elif state.mode != modes[pf]:
                problems.append(f"eswitch {state.mode}, the configuration says {modes[pf]}")
        if problems:
            checks.append(Check(name, FAIL, "; ".join(problems + unknown), fix))
        elif unknown:
            checks.append(Check(name, WARN, "; ".join(unknown),
                                f"check 'devlink dev eswitch show pci/{state.address}'"))
        else:
            said = [f"{state.num_vfs} VFs"] if pf in vfs else []
            said += [f"eswitch {state.mode}"] if pf in modes else []
            checks.append(Check(name, OK, ", ".join(said) + " as configured"))
    return checks


# --- the host ----------------------------------------------------------------------------------------------


def _devlink_mode(address: str) -> str | None:
    from .addresses import PciAddress
    from .switchdev import eswitch_mode

    return eswitch_mode(PciAddress.parse(address))


def read_state(cfg: Config, pf: str, mode_of: Callable[[str], str | None] = _devlink_mode) -> Any:
    """PfState of ``pf`` from sysfs (+ devlink for the mode, only when the configuration sets one), or the
    HostError that says why it cannot be read."""
    from .sysfs import Sysfs

    try:
        info = Sysfs(cfg.sysfs_root).pf(pf)
    except HostError as e:
        return e
    wants_mode = pf in dict(cfg.eswitch)
    return PfState(
        name=pf, address=str(info.address), num_vfs=info.num_vfs, total_vfs=info.total_vfs,
        mode=mode_of(str(info.address)) if wants_mode else None,
        vf_drivers=tuple((str(vf.address), vf.driver) for vf in info.vfs),
    )


def vfio_loaded(root: str) -> bool:
    return os.path.isdir(os.path.join(root, "sys", "module", "vfio_pci"))


def wait_for(cfg: Config, seconds: float, sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Wait up to ``seconds`` for every configured PF's netdev (drivers probe in parallel at boot); the ones
    still missing."""
    deadline = time.monotonic() + seconds
    while True:
        missing = [pf for pf in cfg.host_pfs
                   if not os.path.lexists(os.path.join(cfg.sysfs_root, "sys", "class", "net", pf))]
        if not missing or time.monotonic() >= deadline:
            return missing
        sleep(0.5)


def apply(
    cfg: Config, *, runner: Runner | None = None, mode_of: Callable[[str], str | None] = _devlink_mode,
    held: Mapping[str, str] | None = None, force: bool = False, dry_run: bool = False,
) -> Outcome:
    """Make the host match ``vfs``/``eswitch``: load vfio-pci, then each PF in configuration order. One PF
    that fails is one line in ``failures``; the others go on. ``held``: VF address -> the domain holding it
    (live leases); a PF with such a VF is left alone unless ``force``."""
    from .run import run

    execute = runner or (lambda argv: run(argv, timeout=30.0))
    out = Outcome()
    if not vfio_loaded(cfg.sysfs_root):
        out.done.append("load vfio-pci")
        if not dry_run:
            try:
                execute(["modprobe", "vfio-pci"])
            except VfpluginError as e:
                out.failures.append(f"vfio-pci: {e}")
    vfs, modes = dict(cfg.vfs), dict(cfg.eswitch)
    for pf in cfg.host_pfs:
        state = read_state(cfg, pf, mode_of)
        if not isinstance(state, PfState):
            out.failures.append(str(state))
            continue
        try:
            steps = plan_pf(cfg, state, vfs.get(pf), modes.get(pf))
        except HostError as e:
            out.failures.append(str(e))
            continue
        if not steps:
            continue
        holders = sorted({f"{vf} ({held[vf]})" for vf, _ in state.vf_drivers if held and vf in held})
        if holders and not force:
            out.failures.append(f"PF {pf!r}: not changed while domains hold {', '.join(holders)}; stop them "
                                "first, or run 'vfctl host apply --force'")
            continue
        try:
            _carry_out(cfg, pf, state, steps, execute, out, dry_run, mode_of)
        except VfpluginError as e:
            out.failures.append(str(e))
    return out


def _carry_out(
    cfg: Config, pf: str, state: PfState, steps: list[Step], execute: Runner, out: Outcome, dry_run: bool,
    mode_of: Callable[[str], str | None],
) -> None:
    drivers = state.vf_drivers
    for step in steps:
        out.done.append(step.what)
        if dry_run:
            continue
        if step.kind == "run":
            execute(list(step.argv))
        elif step.kind in ("unbind", "bind"):
            for vf, driver in drivers:
                if driver and driver != "vfio-pci":  # a VF on vfio-pci belongs to a VM: never rebound here
                    _write(cfg.sysfs_root, f"sys/bus/pci/drivers/{driver}/{step.kind}", vf)
        else:
            _write(cfg.sysfs_root, step.path, step.value)
        if step.reread:
            fresh = read_state(cfg, pf, lambda _address: state.mode)
            if isinstance(fresh, PfState):
                drivers = fresh.vf_drivers


def _write(root: str, relative: str, value: str) -> None:
    path = os.path.join(root, relative)
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(f"{value}\n")
    except OSError as e:
        raise HostError(problem=f"cannot write {value} to /{relative}: {os.strerror(e.errno or 0)}") from None
