"""One module per ``vfctl`` command (see vfplugin/cli.py), plus the few helpers they share."""

from __future__ import annotations

import argparse
from typing import Any

from ..config import Config, load


def config(args: argparse.Namespace) -> Config:
    """The configuration named by ``--config``, ``$VFPLUGIN_CONFIG`` or the default path."""
    return load(getattr(args, "config", None))


def read_domain_file(path: str) -> Any:
    """A domain XML file, parsed safely (vfplugin.domxml); one-line errors for unreadable files."""
    from ..domxml import MAX_BYTES, parse_domain
    from ..errors import RequestError

    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise RequestError(source=path, problem=f"cannot read: {e.strerror}") from None
    return parse_domain(data, source=path)


def open_ledger(cfg: Config) -> Any:
    from ..ledger import Ledger

    return Ledger.open(cfg.ledger, ttl=cfg.reservation_ttl)


def host(cfg: Config) -> tuple[Any, Any]:
    """(sysfs, inventory) of this host as the configuration describes it."""
    from ..inventory import discover
    from ..sysfs import Sysfs

    sysfs = Sysfs(cfg.sysfs_root)
    return sysfs, discover(cfg, sysfs)


def network_ports(cfg: Config, uri: str) -> None:
    """After a command changed leases: guarded hostdev networks get a port for every VF vfplugin holds in
    their pools and lose those of VFs given back (netports.py), so libvirt never picks a VF vfplugin gave out.
    A failure is a warning: the command's own work is done, and 'vfctl reconcile' repairs ports."""
    import sys

    from ..netports import sync_now

    for line in sync_now(cfg, uri):
        print(f"vfctl: warning: network ports: {line}", file=sys.stderr)


def aligned(lines: list[list[str]]) -> str:
    """Rows of cells (the header first) as left-aligned columns two spaces apart, without trailing blanks: the
    text tables of ``vfctl list`` and ``vfctl history``."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)
