#!/usr/bin/env python3
"""``vfctl metrics`` on the generated host of bench_list.py (16 PFs x 64 VFs, 1,024 VFs), against
``python3 -I -c pass``.

The ledger holds a lease on every fourth VF (half reserved, half active) and the journal of their claims, so
every family of vfplugin/metrics.py has its samples; the fixture root means no netlink (each PF says so in
``vfplugin_vf_stats_available``). Target: <= 10x the baseline.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from common import against_baseline, bench_host, figure, python

from vfplugin.config import load
from vfplugin.inventory import discover
from vfplugin.ledger import Ledger, Want

PFS, VFS_PER_PF, TARGET, RUNS = 16, 64, 10.0, 15


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="vfplugin-bench-") as tmp:
        config, count, env = bench_host(Path(tmp), PFS, VFS_PER_PF)
        cfg = load(str(config), cache_dir=None)
        vfs = [str(v.address) for v in discover(cfg).vfs]
        with Ledger.open(cfg.ledger) as ledger:
            for i, vf in enumerate(vfs[::4]):
                take = ledger.claim if i % 2 else ledger.reserve
                take(f"uuid-{i}", f"dom{i}", [Want(vf, "net0")])
        interpreter = python()
        argv = [interpreter, "-m", "vfplugin.cli", "--config", str(config), "metrics"]
        out = subprocess.run(argv, capture_output=True, text=True, check=True, env=env).stdout
        states = sum(1 for line in out.splitlines() if line.startswith("vfplugin_vf_state{"))
        if states != 3 * count:
            print(f"bench_metrics: {states} vfplugin_vf_state samples, expected {3 * count}", file=sys.stderr)
            return 1
        measured, base = against_baseline(argv, interpreter, RUNS, env)
    print(figure(f"vfctl metrics, {count} VFs", measured, base, TARGET, what="metrics"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
