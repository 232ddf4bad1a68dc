"""The ledger as a state machine: generated sequences of what the hook, vfctl and reconcile do to it, on a real
SQLite file, checked after every step against a model small enough to be obviously right.

Steps: reserve, claim, allocate (the allocator's pick inside the write transaction), mark_started, save the VF
settings, release (all of a domain's leases, or some), release one VF whoever holds it, expire, time passing
(the ledger's ``clock``), a second process doing the next steps on its own connection, a reboot (the file
opened again with a new ``boot_id``), several domains competing for few VFs (so stale leases are taken over).
The model is a plain dict VF -> lease, plus the sticky history and the release times; the real ledger must
agree with it after every step.

What counts as a change, for "the journal gets exactly one entry per change" (docs/ledger.md, ledger.py):
- each VF a successful reserve/claim/allocate asks for: one ``reserve``/``claim`` ``ok`` entry, preceded by
  one ``takeover`` ``ok`` entry when the VF had a stale lease of another domain;
- each active lease mark_started touches: one ``started`` ``ok``; none touched: one ``started`` ``noop``;
- each lease release/release_vf/expire deletes: one ``release``/``expire`` ``ok``; release/release_vf that
  delete nothing: one ``release`` ``noop`` (expire that deletes nothing writes nothing);
- a reserve/claim refused because another domain holds a VF live: nothing changes, one ``refused`` entry
  naming that VF; one that asks for a VF twice, or for none: nothing changes, nothing journaled;
- saving VF settings is part of the claim, not a change of who holds what: no entry.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from vfplugin.errors import InvalidValue, LedgerError, NoCandidate, VfBusy
from vfplugin.ledger import Ledger, Saved, Snapshot, Want

pytestmark = pytest.mark.sqlite

TTL = 300
VFS = ("0000:0a:10.0", "0000:0a:10.1", "0000:0a:10.2")
DOMAINS = {"u-0": "web0", "u-1": "web1", "u-2": "db2"}
START = 1_000_000.0

domains = st.sampled_from(sorted(DOMAINS))
vfs = st.sampled_from(VFS)
wants = st.lists(
    st.builds(Want, vfs, st.sampled_from([None, "net0", "net1"]), st.sampled_from([None, "52:54:00:00:00:01"]),
              st.sampled_from([None, 100])),
    max_size=3,
)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class Held:
    """The model's lease: what the ledger must say about one VF."""

    def __init__(self, domain: str, want: Want, state: str, boot: str, now: float) -> None:
        self.domain, self.nic_id, self.mac, self.vlan = domain, want.nic_id, want.mac, want.vlan
        self.state, self.boot = state, boot
        self.reserved_at: float | None = now if state == "reserved" else None
        self.activated_at: float | None = now if state == "active" else None
        self.started_at: float | None = None
        self.saved: Saved | None = None


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="vfplugin-ledger-machine-")
        self.path = Path(self.dir) / "state" / "ledger.sqlite3"
        self.clock = Clock()
        self.boots = 0
        self.ledger = self._open()
        self.other = self._open()  # another process on the same host: the hook while vfctl runs
        self.model: dict[str, Held] = {}
        self.sticky: dict[tuple[str, str], str] = {}
        self.released: dict[str, float] = {}
        self.journal: list[tuple[Any, ...]] = []  # every entry so far: the journal only ever grows

    def _open(self) -> Ledger:
        return Ledger.open(self.path, boot_id=f"boot-{self.boots}", ttl=TTL, clock=self.clock)

    def teardown(self) -> None:
        self.ledger.close()
        self.other.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- the model's rules ------------------------------------------------------------------------------------

    @property
    def boot(self) -> str:
        return self.ledger.boot_id

    def stale(self, held: Held) -> bool:
        return held.boot != self.boot or (
            held.state == "reserved" and held.reserved_at is not None and self.clock.now - held.reserved_at > TTL)

    def live_holder(self, vf: str, domain: str) -> Held | None:
        held = self.model.get(vf)
        return held if held is not None and held.domain != domain and not self.stale(held) else None

    def take(self, op: str, domain: str, asked: Sequence[Want]) -> list[tuple[Any, ...]]:
        """What reserve/claim must do to the model; the journal entries they must write."""
        now, name = self.clock.now, DOMAINS[domain]
        for want in asked:
            if self.live_holder(want.vf, domain) is not None:
                return [(op, "refused", domain, name, want.vf)]
        entries: list[tuple[Any, ...]] = []
        for want in asked:
            old = self.model.get(want.vf)
            if old is not None and old.domain != domain:  # stale, or live_holder would have refused
                entries.append(("takeover", "ok", domain, name, want.vf))
                self.released[want.vf] = now
                old = None
            if old is None:
                self.model[want.vf] = Held(domain, want, "active" if op == "claim" else "reserved", self.boot, now)
            else:
                old.nic_id, old.mac, old.vlan = want.nic_id, want.mac, want.vlan
                if op == "claim" or (old.state == "active" and not self.stale(old)):
                    old.state, old.boot = "active", self.boot
                    if op == "claim":
                        old.activated_at = now
                else:
                    old.state, old.boot, old.reserved_at = "reserved", self.boot, now
                    old.activated_at = old.started_at = None
            if want.nic_id is not None:
                self.sticky[(domain, want.nic_id)] = want.vf
            entries.append((op, "ok", domain, name, want.vf))
        return entries

    def free(self, action: str, vf: str) -> tuple[Any, ...]:
        held = self.model.pop(vf)
        self.released[vf] = self.clock.now
        return (action, "ok", held.domain, DOMAINS[held.domain], vf)

    def journaled(self, expected: list[tuple[Any, ...]], ordered: bool = True) -> None:
        """The journal grew by exactly ``expected`` (action, outcome, domain uuid and name, VF), in order unless
        the ledger promises none (mark_started, expire: the order they find leases in)."""
        events = self.ledger.history()
        old = [(e.id, e.time, e.action, e.outcome, e.domain_uuid, e.domain_name, e.vf, e.detail)
               for e in events[:len(self.journal)]]
        assert old == self.journal, "the journal is append-only"
        new = events[len(self.journal):]
        got = [(e.action, e.outcome, e.domain_uuid, e.domain_name, e.vf) for e in new]
        assert got == expected if ordered else sorted(got) == sorted(expected)
        assert all(e.time == self.clock.now for e in new)
        self.journal += [(e.id, e.time, e.action, e.outcome, e.domain_uuid, e.domain_name, e.vf, e.detail)
                         for e in new]
        for e in new:
            event(f"journal: {e.action} {e.outcome}")  # --hypothesis-show-statistics: what the runs reached
            if e.action == "takeover":  # the previous holder is named
                assert any(uuid in e.detail for uuid in DOMAINS if uuid != e.domain_uuid), e.detail

    def others(self, domain: str) -> list[Any]:
        return [lease for lease in self.ledger.leases() if lease.domain_uuid != domain]

    # -- steps ----------------------------------------------------------------------------------------------

    @rule(op=st.sampled_from(["reserve", "claim"]), domain=domains, asked=wants)
    def reserve_or_claim(self, op: str, domain: str, asked: list[Want]) -> None:
        call = self.ledger.reserve if op == "reserve" else self.ledger.claim
        if len({w.vf for w in asked}) < len(asked):
            with pytest.raises(InvalidValue):
                call(domain, DOMAINS[domain], asked)
            self.journaled([])
            return
        expected = self.take(op, domain, asked)
        if expected and expected[0][1] == "refused":
            with pytest.raises(VfBusy) as e:
                call(domain, DOMAINS[domain], asked)
            assert e.value.kwargs["holder"] == DOMAINS[self.model[expected[0][4]].domain]
        else:
            leases = call(domain, DOMAINS[domain], asked)
            assert [(x.vf, x.domain_uuid, x.stale) for x in leases] == [(w.vf, domain, False) for w in asked]
        self.journaled(expected)

    @rule(domain=domains, nics=st.lists(st.sampled_from(["net0", "net1"]), min_size=1, max_size=2, unique=True))
    def allocate(self, domain: str, nics: list[str]) -> None:
        """vfctl define: a pick (a stand-in for the allocator) chooses from a snapshot read in the transaction."""
        free = [vf for vf in VFS if self.live_holder(vf, domain) is None]
        chosen = [Want(vf, nic) for vf, nic in zip(free, nics)]
        seen: list[Snapshot] = []

        def pick(snapshot: Snapshot) -> list[Want]:
            seen.append(snapshot)
            if len(chosen) < len(nics):
                raise NoCandidate(nic=nics[len(chosen)], selector="pool=all", why="all VFs are held")
            return chosen

        expected_sticky = {nic: vf for (d, nic), vf in self.sticky.items() if d == domain}
        expected_leases = self.view()
        expected_released = dict(self.released)
        if len(free) < len(nics):
            with pytest.raises(NoCandidate):
                self.ledger.allocate(domain, DOMAINS[domain], pick)
            expected = [("reserve", "refused", domain, DOMAINS[domain], None)]
        else:
            expected = self.take("reserve", domain, chosen)
            self.ledger.allocate(domain, DOMAINS[domain], pick)
        [snapshot] = seen
        assert [self.row(x) for x in snapshot.leases] == expected_leases
        assert dict(snapshot.sticky) == expected_sticky
        assert dict(snapshot.last_released) == expected_released
        self.journaled(expected)

    @rule(domain=domains)
    def mark_started(self, domain: str) -> None:
        active = sorted(vf for vf, held in self.model.items() if held.domain == domain and held.state == "active")
        for vf in active:
            self.model[vf].started_at = self.clock.now
        self.ledger.mark_started(domain)
        name = DOMAINS[domain]
        self.journaled([("started", "ok", domain, name, vf) for vf in active] if active
                       else [("started", "noop", domain, None, None)], ordered=False)

    @rule(domain=domains, vf=vfs, speed=st.sampled_from([1000, 10]))
    def save_settings(self, domain: str, vf: str, speed: int) -> None:
        settings = Saved("eth2", VFS.index(vf), (("max_tx_rate", speed),))
        held = self.model.get(vf)
        if held is None or held.domain != domain:
            with pytest.raises(LedgerError):
                self.ledger.save_settings(domain, vf, settings)
        else:
            self.ledger.save_settings(domain, vf, settings)
            held.saved = settings
        self.journaled([])

    @rule(domain=domains, only=st.one_of(st.none(), st.lists(vfs, min_size=1, max_size=2, unique=True)),
          named=st.booleans())
    def release(self, domain: str, only: list[str] | None, named: bool) -> None:
        before = self.others(domain)
        mine = sorted(vf for vf, held in self.model.items()
                      if held.domain == domain and (only is None or vf in only))
        expected = [self.free("release", vf) for vf in mine]
        if not expected:
            # an unnamed release names the domain from its history, if it has any
            known = named or any(e[4] == domain and e[5] is not None for e in self.journal)
            expected = [("release", "noop", domain, DOMAINS[domain] if known else None, None)]
        freed = self.ledger.release(domain, vfs=only, domain_name=DOMAINS[domain] if named else None)
        assert [x.vf for x in freed] == mine
        assert self.others(domain) == before, "a release freed another domain's lease"
        self.journaled(expected)

    @rule(vf=vfs)
    def release_vf(self, vf: str) -> None:
        expected = [self.free("release", vf)] if vf in self.model else [("release", "noop", None, None, vf)]
        freed = self.ledger.release_vf(vf, "vfctl release")
        assert (freed.vf if freed else None) == (vf if expected[0][1] == "ok" else None)
        self.journaled(expected)

    @rule()
    def expire(self) -> None:
        stale = sorted(vf for vf, held in self.model.items() if self.stale(held))
        expected = [self.free("expire", vf) for vf in stale]
        assert sorted(x.vf for x in self.ledger.expire()) == stale
        self.journaled(expected, ordered=False)

    @rule(seconds=st.sampled_from([1, 299, 300, 301, 1000]))
    def time_passes(self, seconds: int) -> None:
        self.clock.now += seconds

    @rule()
    def reboot(self) -> None:
        self.ledger.close()
        self.other.close()
        self.boots += 1
        self.ledger, self.other = self._open(), self._open()

    @rule()
    def another_process_takes_over(self) -> None:
        """The next steps go through the other open connection: what one wrote, the other reads."""
        self.ledger, self.other = self.other, self.ledger

    # -- after every step -------------------------------------------------------------------------------------

    def row(self, lease: Any) -> tuple[Any, ...]:
        return (lease.vf, lease.domain_uuid, lease.domain_name, lease.nic_id, lease.mac, lease.vlan, lease.state,
                lease.boot_id, lease.reserved_at, lease.activated_at, lease.started_at, lease.saved, lease.stale)

    def view(self) -> list[tuple[Any, ...]]:
        return [(vf, h.domain, DOMAINS[h.domain], h.nic_id, h.mac, h.vlan, h.state, h.boot, h.reserved_at,
                 h.activated_at, h.started_at, h.saved, self.stale(h)) for vf, h in sorted(self.model.items())]

    @invariant()
    def the_ledger_agrees_with_the_model(self) -> None:
        leases = self.ledger.leases()
        assert [self.row(x) for x in leases] == self.view()
        assert len({x.vf for x in leases}) == len(leases), "two leases on one VF"
        assert all(x.stale for x in leases if x.boot_id != self.boot), "a lease of an earlier boot is live"
        for domain in DOMAINS:
            assert self.ledger.sticky(domain) == {nic: vf for (d, nic), vf in self.sticky.items() if d == domain}
        assert self.ledger.last_released() == self.released
        assert self.other.leases() == leases

    @invariant()
    def the_journal_changed_only_with_a_step(self) -> None:
        assert len(self.ledger.history(limit=len(self.journal) + 1)) == len(self.journal)


TestLedgerMachine = LedgerMachine.TestCase
