"""The one error hierarchy of vfplugin: every failure a user can cause or fix is a VfpluginError.

Each class carries its message template (``msg_fmt``) and, where there is one, the fix (``hint``); both are
formatted from keyword arguments, so the text lives in one place. ``str(error)`` is always a single line:
the hook and ``vfctl`` print exactly that, and only bugs (any other exception) produce a traceback, which
goes to the log. This module must never import anything beyond the standard library.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING would import typing: the hook avoids it (bench_hook)
if TYPE_CHECKING:
    from typing import Any



class VfpluginError(Exception):
    """Base class: a one-line, user-facing failure."""

    msg_fmt = "{detail}"
    hint = ""
    exit_code = 1

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        message = self.msg_fmt.format(**kwargs)
        hint = self.hint.format(**kwargs) if self.hint else ""
        text = f"{message}; {hint}" if hint else message
        # One line, always: a value quoted from a file must not break the line.
        super().__init__(" ".join(text.split()))

    def with_hint(self, hint: str) -> str:
        """The message with ``hint`` in place of the class's own fix (one line, like ``str(error)``)."""
        return " ".join(f"{self.msg_fmt.format(**self.kwargs)}; {hint}".split())


# --- input: configuration, requests, values ---------------------------------------------------------------


class ConfigError(VfpluginError):
    """The YAML configuration is missing a piece, has an unknown key or a bad value."""

    msg_fmt = "{path}: {key}: {problem}"
    exit_code = 2


class InvalidValue(VfpluginError):
    """A PCI address, MAC, VLAN, name... that does not parse."""

    msg_fmt = "{what} {value!r} is invalid: {problem}"
    exit_code = 2


class RequestError(VfpluginError):
    """The domain XML or the vfplugin request inside it is unusable."""

    msg_fmt = "{source}: {problem}"
    exit_code = 2


class NoVfChosen(RequestError):
    """A request that no VF was written for yet: vfplugind (or ``vfctl start``) makes the domain startable."""

    msg_fmt = "{source}: nic {nic!r} has no VF chosen yet"
    hint = "run 'vfctl start {domain}' (it chooses a VF, writes it into the domain and starts it)"


# --- the host ------------------------------------------------------------------------------------------------


class HostError(VfpluginError):
    """A PF or VF is not where the configuration says, or cannot do SR-IOV."""

    msg_fmt = "{problem}"


class PfNotFound(HostError):
    msg_fmt = "PF {pf!r} does not exist on this host (no {path})"
    hint = "fix sriov_nics/ovs_offload_nics in the configuration or bring the NIC up"


class PfNotSriov(HostError):
    msg_fmt = "PF {pf!r} ({address}) has no SR-IOV capability (no sriov_totalvfs)"
    hint = "remove it from the configuration or enable SR-IOV in the firmware"


class PfNotPci(PfNotSriov):
    msg_fmt = "PF {pf!r} is not a PCI device (a bridge, bond, veth or other virtual netdev)"
    hint = "name the physical NIC's netdev in sriov_nics/ovs_offload_nics ('ip -d link' tells them apart)"


class PfNoVfs(HostError):
    msg_fmt = "PF {pf!r} ({address}) has 0 VFs (sriov_numvfs is 0, the NIC supports {total})"
    hint = "run 'vfctl pf set-vfs {pf} {total}'"


class VfCountRefused(HostError):
    msg_fmt = "PF {pf!r} supports 0 to {total} VFs, not {n}"
    hint = "run 'vfctl pf set-vfs {pf} N' with N from 0 to {total}"


class CommandFailed(VfpluginError):
    """A subprocess (ovs-vsctl, devlink, ...) failed; the message carries its argv and stderr."""

    msg_fmt = "{argv} failed ({status}): {stderr}"


# --- state: ledger and allocation ---------------------------------------------------------------------------


class LedgerError(VfpluginError):
    """The ledger file is locked, corrupt, unwritable or of an unknown schema."""

    msg_fmt = "ledger {path}: {problem}"


class LedgerLocked(LedgerError):
    msg_fmt = "ledger {path}: locked by another process for more than {timeout:g} s"
    hint = "retry, or find the process holding it with 'fuser {path}'"


class LedgerCorrupt(LedgerError):
    msg_fmt = "ledger {path}: corrupt ({problem})"
    hint = "move it aside (mv {path} {path}.bad) and run 'vfctl reconcile' to rebuild it from running domains"


class LedgerUnwritable(LedgerError):
    msg_fmt = "ledger {path}: {problem}"
    hint = "{fix}"


class LedgerTooNew(LedgerError):
    msg_fmt = "ledger {path}: schema version {found} is from a newer vfplugin (this one knows up to {known})"
    hint = "upgrade vfplugin; the file was left untouched"


class VfBusy(VfpluginError):
    """A VF is held by another domain."""

    msg_fmt = 'VF {vf} is in use by domain "{holder}"'
    hint = "run 'vfctl start {domain}' to choose a free VF"


class NetworkVfBusy(VfBusy):
    """A libvirt network port on a VF another domain holds (the network's pool counted it free)."""

    hint = (
        "run 'vfctl reconcile' (it gives network {network} a port for every VF vfplugin holds, so libvirt "
        "picks a free one) and start the domain again"
    )


# The fix the hook gives instead of VfBusy's and NoVfChosen's own when the agent that would have re-pointed or
# materialized the domain is not running.
AGENT_DOWN_HINT = "vfplugind is not running: systemctl start vfplugind, or run 'vfctl start {domain}'"


class NoCandidate(VfpluginError):
    """No VF satisfies a request; the message says why."""

    msg_fmt = "no VF for nic {nic!r} ({selector}): {why}"


# --- kernel and switch -------------------------------------------------------------------------------------


class VfSettingRefused(VfpluginError):
    """The NIC driver refused a VF setting the request asks for."""

    msg_fmt = "PF {pf} refused {setting}={value} for VF {vf_index}: {reason}"
    hint = "remove {setting} from the request or use a NIC that supports it"


class NetdevMissing(VfpluginError):
    """The PF a VF setting must go through has no netdev here."""

    msg_fmt = "cannot set {settings} on VF {vf_index} of {pf}: no netdev {pf} in this network namespace"
    hint = "check the PF name in sriov_nics and that its driver is loaded"


class OvsError(VfpluginError):
    msg_fmt = "Open vSwitch: {problem}"


class LibvirtError(VfpluginError):
    msg_fmt = "libvirt: {problem}"


class AgentRunning(VfpluginError):
    msg_fmt = "vfplugind is already running for ledger {ledger} (pid {pid}, lock {path})"
    hint = "stop it first (systemctl stop vfplugind); one agent per ledger"
