"""``vfctl install-hook``: install the qemu hook into libvirt's hook directory for this interpreter."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

HELP = (
    "install the qemu hook as <hooks-dir>/vfplugin (then restart libvirtd/virqemud: hooks are found at start)"
)
DEFAULT_DIR = "/etc/libvirt/hooks/qemu.d"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hooks-dir", default=DEFAULT_DIR, help=f"default: {DEFAULT_DIR}")


def install(directory: Path, python: str) -> Path:
    """Write the hook atomically (a half-written hook would run on the next VM event), mode 0755."""
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


def run(args: argparse.Namespace) -> int:
    from ..errors import HostError

    try:
        target = install(Path(args.hooks_dir), sys.executable)
    except OSError as e:
        raise HostError(
            problem=f"cannot install the hook into {args.hooks_dir}: {e.strerror}; run as root"
        ) from None
    print(f"installed {target} (runs {sys.executable})")
    print("libvirt finds hooks when it starts: run 'systemctl restart libvirtd' (or virtqemud) now")
    return 0
