"""Ledger benchmarks: the hook's claim+release cost as the host grows, and 64 domains claiming at once.

1. claim+release (open, claim one VF, release it, close: what two hook invocations do) with 8 VFs known
   versus 4,096 VFs known (half of them leased by other domains, a journal entry per VF): the 4,096 case must
   cost at most 1.5x the 8 case. Both measured in this run, interleaved, on real files (fsync included).
2. 64 processes claiming at once (two per VF of a 32-VF set): wall time, and the count of double
   allocations, which must be 0.
3. For information: vfctl's choose-and-reserve (allocator inside the write transaction) at 8 and 4,096 VFs.
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, baseline, figure, python  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from vf_values import I350_VF, vf  # noqa: E402

from vfplugin.allocator import DomainContext, choose  # noqa: E402
from vfplugin.config import Pool  # noqa: E402
from vfplugin.errors import VfBusy  # noqa: E402
from vfplugin.ledger import Ledger, Snapshot, Want  # noqa: E402
from vfplugin.request import NicRequest  # noqa: E402

ROUNDS = 40
TARGET = 1.5


def host_vfs(count: int) -> list:  # type: ignore[type-arg]
    """``count`` VFs over PFs of 64 VFs each (bus per PF), like a large host."""
    return [vf(f"eth{i // 64}", i % 64, bus=0x10 + i // 64) for i in range(count)]


def populated(directory: Path, count: int) -> tuple[Path, str]:
    """A ledger knowing ``count`` VFs, half leased by other domains; returns its path and a free VF."""
    path = directory / f"ledger-{count}.sqlite3"
    vfs = host_vfs(count)
    with Ledger.open(path, boot_id="bench") as ledger:
        ledger.record_vfs(vfs)
        held = vfs[: count // 2]
        for start in range(0, len(held), 256):  # a few big transactions, not thousands of fsyncs
            chunk = held[start:start + 256]
            wants = [Want(str(v.address), f"net{j}") for j, v in enumerate(chunk)]
            ledger.claim(f"other-{start}", f"other{start}", wants)
    return path, str(vfs[-1].address)


def claim_release(path: Path, address: str) -> float:
    start = time.perf_counter()
    with Ledger.open(path, boot_id="bench") as ledger:
        ledger.claim("bench-uuid", "bench", [Want(address, "net0")])
    with Ledger.open(path, boot_id="bench") as ledger:
        ledger.release("bench-uuid")
    return time.perf_counter() - start


def allocate_release(path: Path, count: int) -> float:
    vfs = host_vfs(count)
    pools = (Pool("all", (), I350_VF),)
    domain = DomainContext(uuid="bench-uuid", name="bench")
    nics = [NicRequest(id="net0", selector="pool", value="all")]

    def pick(snapshot: Snapshot) -> list[Want]:  # what rewrite.assign_and_reserve hands the ledger
        chosen = choose(nics, vfs, snapshot.leases, domain, pools, snapshot.sticky, snapshot.last_released)
        return [Want(str(c.vf.address), c.nic.id) for c in chosen]

    start = time.perf_counter()
    with Ledger.open(path, boot_id="bench") as ledger:
        ledger.allocate(domain.uuid, domain.name, pick)
        ledger.release(domain.uuid)
    return time.perf_counter() - start


def _claimer(path: str, i: int, barrier, results) -> None:  # type: ignore[no-untyped-def]
    barrier.wait()
    try:
        with Ledger.open(path, boot_id="bench", timeout=30) as ledger:
            address = f"0000:0a:{0x10 + i % 32 // 8:02x}.{i % 8}"  # VF i % 32, wanted by two claimers
            [lease] = ledger.claim(f"uuid-{i}", f"vm{i}", [Want(address, "net0")])
        results.put((i, lease.vf))
    except VfBusy:
        results.put((i, None))


def concurrent(directory: Path) -> tuple[float, int, int]:
    """64 processes, two per VF of 32: (wall seconds, leases granted, double allocations)."""
    path = directory / "ledger-concurrent.sqlite3"
    Ledger.open(path, boot_id="bench").close()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(65)
    results = ctx.Queue()
    children = [ctx.Process(target=_claimer, args=(str(path), i, barrier, results)) for i in range(64)]
    for child in children:
        child.start()
    barrier.wait()
    start = time.perf_counter()
    granted = [results.get(timeout=60) for _ in children]
    wall = time.perf_counter() - start
    for child in children:
        child.join()
    won = [address for _, address in granted if address is not None]
    with Ledger.open(path, boot_id="bench") as ledger:
        leases = ledger.leases()
    doubles = (len(won) - len(set(won))) + (len(leases) - len({x.vf for x in leases}))
    if sorted(won) != sorted(x.vf for x in leases):
        doubles += 1  # a winner the ledger does not show, or the reverse
    return wall, len(leases), doubles


def main() -> int:
    base = baseline(python())
    with tempfile.TemporaryDirectory(prefix="vfplugin-bench-") as tmp:
        directory = Path(tmp)
        small, small_vf = populated(directory, 8)
        large, large_vf = populated(directory, 4096)
        small_times, large_times = [], []
        for _ in range(ROUNDS):  # interleaved: disk and CPU noise hit both sizes alike
            small_times.append(claim_release(small, small_vf))
            large_times.append(claim_release(large, large_vf))
        s, g = statistics.median(small_times), statistics.median(large_times)
        ratio = g / s
        print(f"ledger claim+release, 4096 vs 8 VFs known: {ratio:.2f}x (8 VFs {s * 1000:.1f} ms, 4096 VFs "
              f"{g * 1000:.1f} ms per open+claim+release; target <= {TARGET:g}x: "
              f"{'met' if ratio <= TARGET else 'MISSED'})")

        alloc_small = statistics.median(allocate_release(small, 8) for _ in range(ROUNDS // 2))
        alloc_large = statistics.median(allocate_release(large, 4096) for _ in range(ROUNDS // 2))
        print(f"ledger allocate+release (allocator in the transaction), 4096 vs 8 VFs: "
              f"{alloc_large / alloc_small:.2f}x (8 VFs {alloc_small * 1000:.1f} ms, 4096 VFs "
              f"{alloc_large * 1000:.1f} ms; information, no target)")

        wall, leases, doubles = concurrent(directory)
        print(figure("ledger 64 concurrent claimers", wall, base, what="wall")
              + f"; {leases} leases for 32 VFs, {doubles} double allocations (target 0: "
              f"{'met' if doubles == 0 and leases == 32 else 'MISSED'})")
    return 0 if ratio <= TARGET and doubles == 0 and leases == 32 else 1


if __name__ == "__main__":
    sys.exit(main())
