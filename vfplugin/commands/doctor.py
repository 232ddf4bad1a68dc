"""``vfctl doctor``: is this host ready? One line per check (ok/warn/fail), with the fix for each failure.

The checks live in vfplugin/doctor.py; this module prints them. Exit status 0 when no check fails (warnings
allowed), 1 otherwise.
"""

from __future__ import annotations

import argparse
from typing import Any

from .. import HOOK_NAME, QEMU_HOOKS
from . import config as load_config

HELP = "check the host: IOMMU, vfio-pci, PFs and VFs, hook, daemon, ledger (prints the fix for each failure)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hooks-dir", default=QEMU_HOOKS, help="where the qemu hook should be (%(default)s)"
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..checks import FAIL
    from ..config import config_path
    from ..doctor import agent_checks, checks

    cfg = load_config(args)
    looked_at = config_path(getattr(args, "config", None))
    results = checks(cfg, hooks_dir=Path(args.hooks_dir), config_path=Path(looked_at))
    results += network_checks(cfg, args.connect, str(Path(args.hooks_dir).parent / "network.d" / HOOK_NAME))
    results += agent_checks(cfg)
    for check in results:
        print(check.line())
    failed = sum(1 for c in results if c.status == FAIL)
    print(f"{failed} check(s) failed" if failed else "no check failed")
    return 1 if failed else 0


def network_checks(cfg: object, uri: str, hook: str) -> list[Any]:
    """libvirt's hostdev networks that vfplugin guards: the network hook, and ports against the ledger
    (vfplugin/netports.py). Without a libvirt daemon to ask: one warning line."""
    from .. import virt
    from ..checks import WARN, Check
    from ..config import Config
    from ..errors import VfpluginError
    from ..inventory import discover
    from ..ledger import Ledger, exists
    from ..netports import doctor_checks
    from ..sysfs import Sysfs

    assert isinstance(cfg, Config)
    try:
        inventory = discover(cfg, Sysfs(cfg.sysfs_root))
        leases = []
        if exists(cfg.ledger):
            with Ledger.open(cfg.ledger, ttl=cfg.reservation_ttl, create=False) as ledger:
                leases = ledger.leases()
        with virt.connect(uri) as conn:
            return doctor_checks(conn, cfg, inventory, leases, hook=hook)
    except VfpluginError as e:
        return [Check("hostdev networks", WARN, f"not checked: {e}")]
