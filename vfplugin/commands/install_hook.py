"""``vfctl install-hook``: install the qemu hook and the network hook into libvirt's hook directories for this
interpreter: ``<hooks-dir>/vfplugin`` (default /etc/libvirt/hooks/qemu.d) and ``network.d/vfplugin`` next to
that directory (/etc/libvirt/hooks/network.d)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from .. import QEMU_HOOKS

HELP = (
    "install the qemu hook as <hooks-dir>/vfplugin and the network hook as <hooks-dir>/../network.d/vfplugin "
    "(then restart libvirtd/virtqemud: hooks are found at start)"
)
DEFAULT_DIR = QEMU_HOOKS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hooks-dir", default=DEFAULT_DIR, help=f"default: {DEFAULT_DIR}")
    parser.add_argument("--force", action="store_true", help="replace the hook a vfplugin package installed")


def install(directory: Path, python: str, kind: str = "qemu") -> Path:
    """Write the hook (``kind`` qemu or network) atomically (a half-written hook would run on the next
    event), mode 0755."""
    if kind == "network":
        from ..nethook import script
    else:
        from ..hook import script

    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "vfplugin"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".vfplugin.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(script(python))
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


PACKAGED_HOOK = Path("/usr/libexec/vfplugin/qemu-hook")


def run(args: argparse.Namespace) -> int:
    from ..errors import HostError

    if PACKAGED_HOOK.exists() and Path(args.hooks_dir) == Path(DEFAULT_DIR) and not args.force:
        raise HostError(
            problem=f"the vfplugin package installed the hook already ({PACKAGED_HOOK}, run by "
            f"{DEFAULT_DIR}/vfplugin); overwriting its conffile would stop upgrades from reaching it. "
            "Use --force to replace it anyway"
        )

    try:
        target = install(Path(args.hooks_dir), sys.executable)
        network = install(Path(args.hooks_dir).parent / "network.d", sys.executable, "network")
    except OSError as e:
        raise HostError(
            problem=f"cannot install the hook into {args.hooks_dir}: {e.strerror}; run as root"
        ) from None
    print(f"installed {target} (runs {sys.executable})")
    print(f"installed {network} (runs {sys.executable})")
    print("libvirt finds hooks when it starts: run 'systemctl restart libvirtd' (or virtqemud) now")
    return 0
