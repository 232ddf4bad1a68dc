"""Timing helpers for the benchmarks: median wall time of a command, and the interpreter baseline.

Every figure is a ratio against ``<python> -I -c pass`` measured in the same run with the same interpreter,
so it means the same on a fast and a slow machine. Each bench_*.py prints exactly one line per figure.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # bench scripts import tests.sysfs_builder


def python() -> str:
    """The interpreter vfctl runs with: the project's venv when there is one."""
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def wall_times(
    argv: Sequence[str], runs: int, env: Mapping[str, str] | None = None, warmup: int = 1
) -> list[float]:
    """Wall time (s) of ``runs`` runs of ``argv`` after ``warmup`` unmeasured ones; any failure aborts."""
    environ = dict(os.environ if env is None else env)
    times = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        result = subprocess.run(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environ,
                                check=False)
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            stderr = result.stderr.decode(errors="replace")[-500:]
            raise SystemExit(f"bench: {' '.join(argv)} failed ({result.returncode}): {stderr}")
        if i >= warmup:
            times.append(elapsed)
    return times


def hook_run(argv: Sequence[str], stdin: bytes, env: Mapping[str, str], quiet: bool = False) -> float:
    """Wall time (s) of one hook event: ``argv`` with ``stdin`` as libvirt sends it; a failure aborts, and with
    ``quiet`` so does any output (an event that is none of vfplugin's business must say nothing)."""
    start = time.perf_counter()
    done = subprocess.run(list(argv), input=stdin, capture_output=True, env=dict(env), check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0 or (quiet and (done.stdout or done.stderr)):
        raise SystemExit(f"bench: {' '.join(argv)} failed (exit {done.returncode}): {done.stderr.decode()[-400:]}")
    return elapsed


def median_wall(argv: Sequence[str], runs: int = 15, env: Mapping[str, str] | None = None) -> float:
    return statistics.median(wall_times(argv, runs, env))


def baseline(interpreter: str, runs: int = 15) -> float:
    """Median wall time of ``<interpreter> -I -c pass``: starting Python and nothing else."""
    return median_wall([interpreter, "-I", "-c", "pass"], runs)


def against_baseline(
    argv: Sequence[str], interpreter: str, runs: int = 15, env: Mapping[str, str] | None = None
) -> tuple[float, float]:
    """(median wall time of ``argv``, median of ``<interpreter> -I -c pass``), the two run in turn after one
    unmeasured run each: a machine busy for a moment slows both, not just the one it happened to fall on."""
    measured: list[float] = []
    base: list[float] = []
    for _ in range(runs + 1):
        base += wall_times([interpreter, "-I", "-c", "pass"], 1, warmup=0)
        measured += wall_times(argv, 1, env, warmup=0)
    return statistics.median(measured[1:]), statistics.median(base[1:])


def figure(name: str, measured: float, base: float, target: float | None = None, what: str = "") -> str:
    """One line: ``name: 6.1x python3 -I -c pass (list 0.140 s, baseline 0.023 s; target <= 10x: met)``."""
    ratio = measured / base
    verdict = ""
    if target is not None:
        verdict = f"; target <= {target:g}x: {'met' if ratio <= target else 'MISSED'}"
    detail = f"{what} {measured:.3f} s, " if what else f"{measured:.3f} s, "
    return f"{name}: {ratio:.1f}x python3 -I -c pass ({detail}baseline {base:.3f} s{verdict})"


def bench_host(tmp: Path, pfs: int = 16, vfs_per_pf: int = 64) -> tuple[Path, int, dict[str, str]]:
    """A generated host of ``pfs`` PFs x ``vfs_per_pf`` VFs under ``tmp`` and its configuration (two pools, the
    ledger beside it): (config path, VF count, environment). The fleet-sized host of the list and metrics
    benchmarks. The environment gives the configuration a private cache, as /etc/vfplugin/vfplugin.yaml has
    one in /run/vfplugin: what is measured is vfctl on a host's own configuration, not a PyYAML parse."""
    from tests.sysfs_builder import build_bench

    root = tmp / "host"
    count = build_bench(root, pfs, vfs_per_pf)
    config = tmp / "vfplugin.yaml"
    names = ", ".join(f"bench{i}" for i in range(pfs))
    config.write_text(
        f"sriov_nics: [{names}]\n"
        f"pools:\n  cx5: {{model: \"ConnectX-5 Virtual Function\"}}\n  x700: {{pfs: [bench1, bench3]}}\n"
        f"sysfs_root: {root}\nledger: {tmp / 'ledger.sqlite3'}\n"
    )
    return config, count, {**os.environ, "VFPLUGIN_CONFIG_CACHE": str(tmp / "config-cache")}
