"""Many real processes against one ledger file at the same instant: never a double allocation.

Each child opens the ledger itself (the first round also races to create the file) and goes through the
same calls the hook and vfctl make: ``Ledger.claim`` for the hook's ``prepare begin``, and
``rewrite.assign_and_reserve`` (allocator inside ``Ledger.allocate``'s write transaction) for `vfctl define`.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest
from vf_values import I350_VF, pf_vfs

from vfplugin.config import Config, Pool
from vfplugin.domxml import parse_domain
from vfplugin.errors import NoCandidate, VfBusy
from vfplugin.ledger import Ledger, Want
from vfplugin.rewrite import assign_and_reserve

pytestmark = pytest.mark.sqlite

PROCESSES = 64
ROUNDS = 3
ROUND_DEADLINE = 15.0  # seconds; a round takes well under one on 2 cores
VF = "0000:0a:10.0"
POOL_VFS = pf_vfs("eth2", 16, bus=0x0A) + pf_vfs("eth3", 16, bus=0x0B)
CONFIG = Config(sriov_nics=("eth2", "eth3"), pools=(Pool("fast", ("eth2", "eth3"), I350_VF),))
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


DOMAIN_XML = """<domain type='qemu'>
  <name>vm{i}</name>
  <uuid>00000000-0000-4000-8000-{i:012d}</uuid>
  <memory unit='MiB'>64</memory>
  <metadata><vfp:nics xmlns:vfp="urn:vfplugin:1"><vfp:nic id="net0" pool="fast"/></vfp:nics></metadata>
  <devices/>
</domain>"""


def allocate_one(path: str, i: int, barrier: Any, results: Any) -> None:
    """What `vfctl define` does: choose inside the ledger's write transaction and reserve (rewrite.py)."""
    domain = parse_domain(DOMAIN_XML.format(i=i), source=f"vm{i}.xml")
    barrier.wait()
    try:
        with Ledger.open(path, boot_id="boot", timeout=30) as ledger:
            [assignment] = assign_and_reserve(domain, CONFIG, POOL_VFS, ledger, cpu_nodes={})
        results.put((i, "won", str(assignment.vf.address)))
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
            assert {(x.vf, x.domain_name) for x in leases} == {(vf, f"vm{i}") for i, vf in won.items()}
            assert all(x.state == "reserved" for x in leases)
            assert ledger.integrity() == []
            for x in leases:
                ledger.release(x.domain_uuid)
            assert ledger.leases() == []


def test_threads_of_one_process_creating_the_ledger_at_once_all_open_it(tmp_path):
    """The agent's threads may be the first to open a new ledger together: one file, no thread fails, and the
    process's umask is what it was (it is the process's, and Ledger.open sets 077 while it opens)."""
    import os
    import threading

    umask = os.umask(0o022)
    os.umask(umask)

    path = str(tmp_path / "ledger.sqlite3")
    barrier = threading.Barrier(8)
    failures: list[str] = []

    def open_it() -> None:
        barrier.wait()
        try:
            with Ledger.open(path, boot_id="boot", timeout=30) as ledger:
                ledger.leases()
        except Exception as e:  # noqa: BLE001 - the test reports whatever a thread met
            failures.append(f"{type(e).__name__}: {e}")

    for _ in range(5):  # the race is narrow: a fresh file each round
        Path(path).unlink(missing_ok=True)
        threads = [threading.Thread(target=open_it) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []
    assert sorted(p.name for p in tmp_path.iterdir() if ".new-" in p.name) == []
    assert os.umask(umask) == umask
