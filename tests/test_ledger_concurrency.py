"""Many real processes against one ledger file at the same instant: never a double allocation.

Each child opens the ledger itself (the first round also races to create the file) and goes through the
same calls the hook and vfctl make: ``Ledger.claim`` for the hook's ``prepare begin``, ``Ledger.allocate``
with ``allocator.picker`` for vfctl's choose-and-reserve.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest
from vf_values import I350_VF, pf_vfs

from vfplugin.allocator import DomainContext, picker
from vfplugin.config import Pool
from vfplugin.errors import NoCandidate, VfBusy
from vfplugin.ledger import Ledger, Want
from vfplugin.request import NicRequest

pytestmark = pytest.mark.sqlite

PROCESSES = 64
ROUNDS = 3
ROUND_DEADLINE = 15.0  # seconds; a round takes well under one on 2 cores
VF = "0000:0a:10.0"
POOL_VFS = pf_vfs("eth2", 16, bus=0x0A) + pf_vfs("eth3", 16, bus=0x0B)
POOLS = (Pool("fast", ("eth2", "eth3"), I350_VF),)
CTX = multiprocessing.get_context("fork")  # children inherit the imported modules: 64 starts stay cheap


def claim_one(path: str, i: int, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        with Ledger.open(path, boot_id="boot", timeout=30) as ledger:
            ledger.claim(f"uuid-{i}", f"vm{i}", [Want(VF, "net0")])
        results.put((i, "won", ""))
    except VfBusy as e:
        results.put((i, "busy", f"{e.kwargs['holder']}|{e.kwargs['domain']}|{e}"))
    except Exception as e:  # reported to the parent, which fails the test with it
        results.put((i, "error", repr(e)))


def allocate_one(path: str, i: int, barrier: Any, results: Any) -> None:
    domain = DomainContext(uuid=f"uuid-{i}", name=f"vm{i}")
    pick = picker([NicRequest(id="net0", selector="pool", value="fast")], POOL_VFS, domain, POOLS)
    barrier.wait()
    try:
        with Ledger.open(path, boot_id="boot", timeout=30) as ledger:
            [lease] = ledger.allocate(domain.uuid, domain.name, pick)
        results.put((i, "won", lease.vf))
    except NoCandidate as e:
        results.put((i, "none", str(e)))
    except Exception as e:
        results.put((i, "error", repr(e)))


def race(target: Any, path: Path) -> list[tuple[int, str, str]]:
    barrier = CTX.Barrier(PROCESSES)
    results = CTX.Queue()
    children = [CTX.Process(target=target, args=(str(path), i, barrier, results)) for i in range(PROCESSES)]
    start = time.monotonic()
    for child in children:
        child.start()
    outcomes = []
    try:
        for _ in children:
            outcomes.append(results.get(timeout=max(0.1, ROUND_DEADLINE - (time.monotonic() - start))))
    finally:
        for child in children:
            child.join(timeout=1)
            if child.is_alive():
                child.kill()
                child.join()
    assert all(child.exitcode == 0 for child in children)
    return sorted(outcomes)


def test_64_processes_claiming_one_vf_exactly_one_wins(tmp_path):
    path = tmp_path / "state" / "ledger.sqlite3"  # round 1 also races to create the file
    for round_ in range(ROUNDS):
        outcomes = race(claim_one, path)
        errors = [o for o in outcomes if o[1] == "error"]
        assert errors == []
        winners = [i for i, what, _ in outcomes if what == "won"]
        assert len(winners) == 1, f"round {round_}: {len(winners)} winners"
        holder = f"vm{winners[0]}"
        losers = [detail.split("|") for _, what, detail in outcomes if what == "busy"]
        assert len(losers) == PROCESSES - 1
        assert all(h == holder for h, _, _ in losers)
        expected = f"VF {VF} is in use by domain \"{holder}\"; run 'vfctl start {{}}' to choose a free VF"
        assert all(message == expected.format(domain) for _, domain, message in losers)
        with Ledger.open(path, boot_id="boot") as ledger:
            assert [(x.vf, x.domain_name) for x in ledger.leases()] == [(VF, holder)]
            refused = [e for e in ledger.history(vf=VF) if e.action == "claim" and e.outcome == "refused"]
            assert len(refused) == (PROCESSES - 1) * (round_ + 1)
            assert ledger.integrity() == []
            ledger.release(f"uuid-{winners[0]}")


def test_64_processes_allocating_from_a_32_vf_pool_get_32_distinct_vfs_and_32_clear_failures(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    for round_ in range(ROUNDS):
        outcomes = race(allocate_one, path)
        assert [o for o in outcomes if o[1] == "error"] == []
        won = {i: vf for i, what, vf in outcomes if what == "won"}
        failed = [message for _, what, message in outcomes if what == "none"]
        assert len(won) == 32 and len(set(won.values())) == 32, f"round {round_}"
        assert set(won.values()) == {str(v.address) for v in POOL_VFS}
        assert len(failed) == 32
        assert all(m.startswith("no VF for nic 'net0' (pool=fast): all 32 VFs of pool fast are held (by vm")
                   and m.endswith(" and 27 more)") for m in failed), failed[0]
        with Ledger.open(path, boot_id="boot") as ledger:
            leases = ledger.leases()
            assert {(x.vf, x.domain_uuid) for x in leases} == {(vf, f"uuid-{i}") for i, vf in won.items()}
            assert all(x.state == "reserved" for x in leases)
            assert ledger.integrity() == []
            for i in won:
                ledger.release(f"uuid-{i}")
            assert ledger.leases() == []
