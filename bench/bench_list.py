#!/usr/bin/env python3
"""``vfctl list --json`` on a generated host with 16 PFs x 64 VFs (1,024 VFs), against ``python3 -I -c pass``.

The tree comes from tests/sysfs_builder.build_bench: even PFs are ConnectX-5 in switchdev mode (every VF
has a representor), odd ones X710; three VFs in four have a host netdev. Target: <= 10x the baseline.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import against_baseline, bench_host, figure, python

PFS, VFS_PER_PF, TARGET, RUNS = 16, 64, 10.0, 15


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="vfplugin-bench-") as tmp:
        config, count, env = bench_host(Path(tmp), PFS, VFS_PER_PF)
        interpreter = python()
        argv = [interpreter, "-m", "vfplugin.cli", "--config", str(config), "list", "--json"]
        listed = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True, env=env).stdout)
        if len(listed) != count:
            print(f"bench_list: listed {len(listed)} VFs, expected {count}", file=sys.stderr)
            return 1
        measured, base = against_baseline(argv, interpreter, RUNS, env)
    print(figure(f"vfctl list --json, {count} VFs", measured, base, TARGET, what="list"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
