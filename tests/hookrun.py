"""Running the hook the way libvirt runs it: the installed script, argv, domain XML on stdin, a scrubbed
environment (libvirt passes only LC_ALL=C and a fixed PATH; the tests add VFPLUGIN_CONFIG, which libvirt
would not, to point it at a fixture host), and domain XML builders for the tests that drive it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path

from vfplugin.hook import script

LIBVIRT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LIFECYCLE = (
    ("prepare", "begin"),
    ("start", "begin"),
    ("started", "begin"),
    ("stopped", "end"),
    ("release", "end"),
)


@dataclass(frozen=True)
class HookResult:
    status: int
    stdout: str
    stderr: str


INSTALLED_HOOK = Path("/etc/libvirt/hooks/qemu.d/vfplugin")


def install(tmp_path: Path, python: str = sys.executable) -> Path:
    """The hook as `vfctl install-hook` writes it, for this interpreter (the venv that has vfplugin); with
    VFPLUGIN_INSTALLED=1, the hook the package installed (which runs the installed vfplugin)."""
    if os.environ.get("VFPLUGIN_INSTALLED") == "1":
        assert os.access(INSTALLED_HOOK, os.X_OK), f"{INSTALLED_HOOK} is not installed"
        return INSTALLED_HOOK
    path = tmp_path / "qemu.d" / "vfplugin"
    path.parent.mkdir(exist_ok=True)
    path.write_text(script(python))
    path.chmod(0o755)
    return path


def run_hook(
    hook: Path,
    name: str,
    operation: str,
    sub: str,
    xml: str,
    config: Path | None,
    netns: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> HookResult:
    env = {"LC_ALL": "C", "PATH": LIBVIRT_PATH}
    if config is not None:
        env["VFPLUGIN_CONFIG"] = str(config)
        env["VFPLUGIN_CONFIG_CACHE"] = str(config.parent / "config-cache")  # as the hook caches /etc's
    env.update(extra_env or {})
    argv = [str(hook), name, operation, sub, "-"]
    if netns:
        argv = ["ip", "netns", "exec", netns] + argv
    done = subprocess.run(argv, input=xml.encode(), capture_output=True, env=env, timeout=60, check=False)
    return HookResult(done.returncode, done.stdout.decode(), done.stderr.decode())


def domain_xml(name: str, uuid: str | None = None, nics: str = "", devices: str = "") -> str:
    """A TCG domain as libvirt would hand it to the hook (and as the libvirt tier defines it)."""
    uuid = uuid or str(uuidlib.uuid4())
    metadata = f'<metadata><vfp:nics xmlns:vfp="urn:vfplugin:1">{nics}</vfp:nics></metadata>' if nics else ""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  {metadata}
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><acpi/></features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>{devices}
    <memballoon model='none'/>
  </devices>
</domain>
"""


def hostdev_interface(address: str, mac: str = "52:54:00:00:00:01", nic_id: str | None = None) -> str:
    dom, bus, rest = address.split(":")
    slot, fn = rest.split(".")
    alias = f"<alias name='ua-vfplugin-{nic_id}'/>" if nic_id else ""
    return (
        f"\n    <interface type='hostdev' managed='yes'><mac address='{mac}'/><source>"
        f"<address type='pci' domain='0x{dom}' bus='0x{bus}' slot='0x{slot}' function='0x{fn}'/>"
        f"</source>{alias}</interface>"
    )


def plain_hostdev(address: str) -> str:
    dom, bus, rest = address.split(":")
    slot, fn = rest.split(".")
    return (
        f"\n    <hostdev mode='subsystem' type='pci' managed='yes'><source>"
        f"<address domain='0x{dom}' bus='0x{bus}' slot='0x{slot}' function='0x{fn}'/></source></hostdev>"
    )


def vfctl(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    """vfctl as a user runs it: a process of its own (/usr/bin/vfctl when VFPLUGIN_INSTALLED=1)."""
    argv = (
        ["/usr/bin/vfctl"]
        if os.environ.get("VFPLUGIN_INSTALLED") == "1"
        else [sys.executable, "-m", "vfplugin.cli"]
    )
    if config is not None:
        argv += ["--config", str(config)]
    return subprocess.run(argv + list(args), capture_output=True, text=True, timeout=120, check=False)
