#!/usr/bin/env python3
"""Churn: 48 domains defined with plain ``virsh define`` over a pool of 32 VFs, random plain ``virsh start`` and
stop, with vfplugind running and without it. Needs root and libvirtd (run it under the system lock).

Figure: vfplugin refusals per 1,000 starts made while a VF of the pool was held by no running domain. Target
with the agent: 0. A refusal whose VF was claimed less than ``LAG`` seconds before the start (the agent had not
re-pointed the domain yet: the start raced another start) is counted apart, as the issue asks.

The host is a generated fixture tree (2 I350-like PFs x 16 VFs, every VF on its host driver); libvirtd runs the
hook from this checkout, as in tests/test_libvirt.py. Without SR-IOV hardware a start that vfplugin lets
through fails later at device set-up (after ``prepare begin`` claimed and ``release end`` released), so a
running domain is stood in for by what the hook records for one: after a start vfplugin did not refuse, the
bench claims the VFs the hook claimed, as an active, started lease; stopping releases them, as ``release end``
would. The agent sees only what it would see on a real host: libvirt's events and the ledger's journal.

``bench_churn.py [--iterations N] [--baseline-iterations B] [--seed S]``: N operations with the agent (default
200, to keep bench/run short; the README's figure is from ``--iterations 1000``), B without it (default 100:
without the agent a domain defined with plain virsh never gets a VF, so every start is refused).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import ROOT, python

from tests.hookrun import domain_xml
from tests.sysfs_builder import Function, Netdev, SysfsTree
from tests.test_libvirt import CONFIG, HOOK, _stop, start_libvirtd, virsh
from vfplugin.hook import script
from vfplugin.ledger import Ledger, Want

DOMAINS, PFS, VFS_PER_PF = 48, 2, 16
PREFIX = "vfpchurn-"
LAG = 2.0  # seconds: a refusal over a VF claimed this recently is a race with the agent, counted apart
BUSY = re.compile(r'VF (\S+) is in use by domain "')


def build_host(root: Path) -> list[str]:
    """2 PFs x 16 VFs, igbvf-bound, NUMA 0 and 1; the VF addresses."""
    t = SysfsTree(root)
    t.numa(0, "0")
    t.numa(1, "1")
    t.cmdline("BOOT_IMAGE=/boot/vmlinuz ro intel_iommu=on iommu=pt")
    addresses, group = [], 200
    for p in range(PFS):
        bus = 0x40 + p
        vfs = []
        for i in range(VFS_PER_PF):
            devfn = 0x80 + i
            address = f"0000:{bus:02x}:{devfn >> 3:02x}.{devfn & 7}"
            mac = f"02:c4:{p:02x}:00:00:{i:02x}"
            vfs.append(Function(address, "8086", "1520", "igbvf", p, group, (Netdev(f"c{p}v{i}", mac),)))
            addresses.append(address)
            group += 1
        uplink = (Netdev(f"churn{p}", f"0c:c4:{p:02x}:00:00:00"),)
        pf = Function(f"0000:{bus:02x}:00.0", "8086", "1521", "igb", p, group, uplink)
        t.pf(f"pci0000:{bus - 1:02x}/0000:{bus - 1:02x}:00.0", pf, vfs, total_vfs=VFS_PER_PF)
        group += 1
    return addresses


class Run:
    def __init__(self, work: Path, ledger: Path, pool: list[str], agent: bool, iterations: int, seed: int) -> None:
        self.work, self.ledger, self.pool, self.agent = work, ledger, pool, agent
        self.iterations, self.rng = iterations, random.Random(seed)
        self.uuids: dict[str, str] = {}
        self.running: set[str] = set()
        self.starts = self.with_free = self.refused = self.lagged = self.unsatisfied = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def setup(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.ledger}{suffix}").unlink(missing_ok=True)
        cleanup()
        if self.agent:
            log = open(self.work / "vfplugind.log", "ab")
            self.proc = subprocess.Popen(
                [python(), "-m", "vfplugin.agent", "--config", str(CONFIG), "--metrics-address", "off"],
                stdout=log, stderr=log, env={**os.environ, "VFPLUGIN_LOG_STDERR": "1"}, cwd=ROOT,
            )
            wait(lambda: "watching" in (self.work / "vfplugind.log").read_text(), 30, "vfplugind did not start")
        for i in range(DOMAINS):
            name = f"{PREFIX}{i:02d}"
            source = self.work / f"{name}.xml"
            source.write_text(domain_xml(name, nics='<vfp:nic id="net0" pool="churn"/>'))
            virsh("define", str(source), check=True)
            self.uuids[name] = virsh("domuuid", name, check=True).stdout.strip()
        if self.agent:
            wait(lambda: all("ua-vfplugin-net0" in virsh("dumpxml", "--inactive", n).stdout for n in self.uuids),
                 30, "vfplugind did not materialize every domain")

    def held(self) -> dict[str, float]:
        """VF -> when it was claimed, for the stand-ins of running domains."""
        with Ledger.open(self.ledger) as ledger:
            return {lease.vf: lease.activated_at or 0.0 for lease in ledger.leases() if lease.state == "active"}

    def start(self, name: str) -> None:
        uuid = self.uuids[name]
        held = self.held()
        free = len(set(self.pool) - set(held)) > 0
        started_at = time.time()
        done = virsh("start", name)
        self.starts += 1
        self.with_free += free
        if "vfplugin:" in done.stderr:
            if not free:
                return
            self.refused += 1
            busy = BUSY.search(done.stderr)
            if busy and started_at - held.get(busy.group(1), 0.0) < LAG:
                self.lagged += 1
            return
        assert "passthrough of host PCI devices" in done.stderr or done.returncode == 0, done.stderr
        with Ledger.open(self.ledger) as ledger:  # what a start that got further would hold: the hook's claim
            claimed = [e.vf for e in ledger.history(domain=uuid, limit=4) if e.action == "claim" and e.vf]
            if not claimed:
                raise SystemExit(f"bench_churn: {name} started without a claim: {done.stderr}")
            ledger.claim(uuid, name, [Want(vf=claimed[-1], nic_id="net0")])
            ledger.mark_started(uuid)
        self.running.add(name)

    def stop(self, name: str) -> None:
        with Ledger.open(self.ledger) as ledger:  # release end of the stand-in
            ledger.release(self.uuids[name], reason="stopped", domain_name=name)
        self.running.discard(name)

    def churn(self) -> None:
        names = sorted(self.uuids)
        for _ in range(self.iterations):
            name = self.rng.choice(names)
            if name in self.running:
                self.stop(name)
            else:
                self.start(name)

    def teardown(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=15)
            if "Traceback" in (self.work / "vfplugind.log").read_text():
                raise SystemExit("bench_churn: vfplugind logged a traceback (see its log)")
        cleanup()

    def figure(self) -> str:
        per = 1000.0 * (self.refused - self.lagged) / max(self.with_free, 1)
        lag = 1000.0 * self.lagged / max(self.with_free, 1)
        what = "with vfplugind" if self.agent else "without vfplugind"
        target = f"; target 0: {'met' if self.refused - self.lagged == 0 else 'MISSED'}" if self.agent else ""
        return (f"churn {what}: {per:.0f} refusals per 1,000 starts with a free VF "
                f"({self.refused - self.lagged} of {self.with_free}; {self.starts} starts, {self.iterations} "
                f"operations, {DOMAINS} domains over {len(self.pool)} VFs; races with the agent counted apart: "
                f"{self.lagged}, {lag:.0f} per 1,000{target})")


def wait(condition: Callable[[], object], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_churn: {what} within {seconds} s")
        time.sleep(0.1)


def cleanup() -> None:
    for name in virsh("list", "--all", "--name").stdout.split():
        if name.startswith(PREFIX):
            virsh("destroy", name)
            virsh("undefine", name)


def main() -> int:
    args = argparse.ArgumentParser()
    args.add_argument("--iterations", type=int, default=200)
    args.add_argument("--baseline-iterations", type=int, default=100)
    args.add_argument("--seed", type=int, default=13)
    opts = args.parse_args()
    if os.geteuid() != 0 or shutil.which("libvirtd") is None:
        print("bench_churn: needs root and libvirtd", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="vfplugin-churn-"))
    os.chmod(work, 0o755)
    saved = {}
    for path in (HOOK, CONFIG):
        if path.is_symlink() or path.exists():
            saved[path] = path.parent.parent / f"{path.name}.saved-by-vfplugin-bench"
            os.rename(path, saved[path])
    try:
        pool = build_host(work / "host")
        ledger = work / "ledger.sqlite3"
        CONFIG.parent.mkdir(parents=True, exist_ok=True)
        CONFIG.write_text(
            f"sriov_nics: [{', '.join(f'churn{p}' for p in range(PFS))}]\n"
            f"pools:\n  churn: {{pfs: [{', '.join(f'churn{p}' for p in range(PFS))}]}}\n"
            f"sysfs_root: {work / 'host'}\nledger: {ledger}\n"
        )
        HOOK.parent.mkdir(parents=True, exist_ok=True)
        HOOK.write_text(script(python()))
        HOOK.chmod(0o755)
        start_libvirtd()
        for agent in (True, False):
            iterations = opts.iterations if agent else opts.baseline_iterations
            run = Run(work, ledger, pool, agent, iterations, opts.seed)
            began = time.monotonic()
            run.setup()
            try:
                run.churn()
            finally:
                run.teardown()
            print(f"{run.figure()} [{time.monotonic() - began:.0f} s]")
    finally:
        cleanup()
        _stop("/run/libvirtd.pid")
        for path in (HOOK, CONFIG):
            path.unlink(missing_ok=True)
            if path in saved:
                os.rename(saved[path], path)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
