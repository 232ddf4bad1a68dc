"""The ledger's rules, on real SQLite files: leases, staleness, the journal, the file itself, migrations."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest
from vf_values import pf_vfs

from vfplugin import leases
from vfplugin.errors import InvalidValue, LedgerError, LedgerTooNew, VfBusy
from vfplugin.ledger import SCHEMA_VERSION, Ledger, NetNic, Saved, Want

pytestmark = pytest.mark.sqlite

FIXTURE_V1 = Path(__file__).parent / "fixtures" / "ledger" / "v1.sql"
VF1, VF2, VF3 = "0000:0a:10.0", "0000:0a:10.1", "0000:0a:10.2"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ledger.sqlite3"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(path: Path, clock: Clock):  # type: ignore[no-untyped-def]
    with Ledger.open(path, boot_id="boot-1", ttl=300, clock=clock) as opened:
        yield opened


def live(ledger: Ledger) -> list[tuple[str, str, str]]:
    return [(x.vf, x.domain_name, x.state) for x in ledger.leases() if not x.stale]


# --- leases -----------------------------------------------------------------------------------------------


def test_claim_of_free_vfs_makes_active_leases(ledger):
    leases = ledger.claim("u-web", "web1", [Want(VF1, "net0", "52:54:00:00:00:01", 100), Want(VF2, None)])
    assert [(x.vf, x.state, x.nic_id, x.mac, x.vlan) for x in leases] == [
        (VF1, "active", "net0", "52:54:00:00:00:01", 100), (VF2, "active", None, None, None)]
    assert live(ledger) == [(VF1, "web1", "active"), (VF2, "web1", "active")]


def test_claim_of_a_vf_held_by_another_domain_raises_vfbusy_and_changes_nothing(ledger):
    ledger.claim("u-web", "web1", [Want(VF2, "net0")])
    with pytest.raises(VfBusy) as e:
        ledger.claim("u-db", "db1", [Want(VF1, "net0"), Want(VF2, "net1")])
    assert e.value.kwargs == {"vf": VF2, "holder": "web1", "domain": "db1"}
    assert str(e.value) == f"VF {VF2} is in use by domain \"web1\"; run 'vfctl start db1' to choose a free VF"
    assert live(ledger) == [(VF2, "web1", "active")]  # all or nothing: VF1 was not taken
    refused = ledger.history(domain="db1")[-1]
    assert (refused.action, refused.outcome, refused.vf) == ("claim", "refused", VF2)


def test_claim_turns_this_domains_reservation_active(ledger):
    ledger.reserve("u-web", "web1", [Want(VF1, "net0")])
    assert live(ledger) == [(VF1, "web1", "reserved")]
    [lease] = ledger.claim("u-web", "web1", [Want(VF1, "net0", "52:54:00:00:00:01")])
    assert (lease.state, lease.mac) == ("active", "52:54:00:00:00:01")


def test_a_reservation_blocks_other_domains(ledger):
    ledger.reserve("u-web", "web1", [Want(VF1, "net0")])
    with pytest.raises(VfBusy):
        ledger.claim("u-db", "db1", [Want(VF1, "net0")])
    with pytest.raises(VfBusy):
        ledger.reserve("u-db", "db1", [Want(VF1, "net0")])


def test_reserving_a_vf_this_domain_runs_with_keeps_it_active(ledger):
    ledger.claim("u-web", "web1", [Want(VF1, "net0")])
    [lease] = ledger.reserve("u-web", "web1", [Want(VF1, "net0")])
    assert lease.state == "active"


def test_the_same_vf_twice_in_one_request_is_refused(ledger):
    with pytest.raises(InvalidValue):
        ledger.claim("u-web", "web1", [Want(VF1, "net0"), Want(VF1, "net1")])
    assert ledger.leases() == []


def test_one_lease_per_vf_is_a_database_constraint(ledger, path):
    ledger.claim("u-web", "web1", [Want(VF1, "net0")])
    db = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        db.execute("INSERT INTO leases (vf, domain_uuid, domain_name, state, boot_id) "
                   "VALUES (?, 'u-db', 'db1', 'active', 'boot-1')", (VF1,))
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        db.execute("INSERT INTO leases (vf, domain_uuid, domain_name, state, boot_id) "
                   "VALUES (?, 'u-db', 'db1', 'running', 'boot-1')", (VF2,))
    db.close()


def test_release_frees_only_this_domains_leases(ledger):
    ledger.claim("u-web", "web1", [Want(VF1, "net0")])
    ledger.claim("u-db", "db1", [Want(VF2, "net0")])
    assert ledger.release("u-db", domain_name="db1") != []
    assert live(ledger) == [(VF1, "web1", "active")]


def test_release_by_a_refused_domain_frees_nothing(ledger):
    # libvirt runs `release end` even for the start the hook refused: the holder must keep its VF
    ledger.claim("u-web", "web1", [Want(VF1, "net0")])
    with pytest.raises(VfBusy):
        ledger.claim("u-db", "db1", [Want(VF1, "net0")])
    assert ledger.release("u-db", domain_name="db1") == []
    assert live(ledger) == [(VF1, "web1", "active")]
    noop = ledger.history(domain="u-db")[-1]
    assert (noop.action, noop.outcome, noop.detail) == ("release", "noop", "stopped: no lease held")


def test_a_release_that_frees_nothing_still_names_the_domain_it_knows(ledger):
    # the hook's `release end` after a refused start passes the UUID only
    ledger.claim("u-web", "web1", [Want(VF1, "net0")])
    with pytest.raises(VfBusy):
        ledger.claim("u-db", "db1", [Want(VF1, "net0")])
    ledger.release("u-db")
    events = [(e.action, e.outcome) for e in ledger.history(domain="db1")]
    assert events == [("claim", "refused"), ("release", "noop")]


# The VF's lease before (who holds it, as the domain asking sees it), set up in a file of its own.
HOLDERS = {
    leases.FREE: lambda db, clock: None,
    leases.OTHER_LIVE: lambda db, clock: db.claim("u-db", "db1", [Want(VF1, "net0")]),
    leases.OTHER_STALE: lambda db, clock: (db.reserve("u-db", "db1", [Want(VF1, "net0")]),
                                          setattr(clock, "now", clock.now + 301)),  # past the TTL
    leases.OWN_ACTIVE: lambda db, clock: db.claim("u-web", "web1", [Want(VF1, "net0")]),
    leases.OWN_RESERVED: lambda db, clock: db.reserve("u-web", "web1", [Want(VF1, "net0")]),
}
# What the table's action leaves: (holder, state) of the lease, and the journal's new entries.
AFTER = {
    leases.INSERT: lambda op: (("web1", "active" if op == "claim" else "reserved"), [op]),
    leases.REFUSE: lambda op: (None, [op + ":refused"]),
    leases.TAKE_OVER: lambda op: (("web1", "active" if op == "claim" else "reserved"), ["takeover", op]),
    leases.ACTIVATE: lambda op: (("web1", "active"), [op]),
    leases.KEEP_ACTIVE: lambda op: (("web1", "active"), [op]),
    leases.RENEW: lambda op: (("web1", "reserved"), [op]),
}


def test_the_transition_table_covers_every_operation_and_holder():
    assert set(leases.TAKE) == {(op, h) for op in ("claim", "reserve") for h in HOLDERS}
    assert set(leases.TAKE.values()) == set(AFTER)


@pytest.mark.parametrize("op, held", sorted(leases.TAKE))
def test_a_claim_or_reservation_does_what_the_transition_table_says(tmp_path, op, held):
    clock = Clock()
    with Ledger.open(tmp_path / "ledger.sqlite3", boot_id="boot-1", ttl=300, clock=clock) as db:
        HOLDERS[held](db, clock)
        before = db.lease(VF1)
        assert leases.holder(before, "u-web") == held
        seen = len(db.history())
        lease, entries = AFTER[leases.TAKE[op, held]](op)
        take = db.claim if op == "claim" else db.reserve
        if lease is None:
            with pytest.raises(VfBusy):
                take("u-web", "web1", [Want(VF1, "net0")])
            assert db.lease(VF1) == before
        else:
            take("u-web", "web1", [Want(VF1, "net0")])
            after = db.lease(VF1)
            assert after is not None and (after.domain_name, after.state) == lease and not after.stale
        assert [e.action + (":refused" if e.outcome == "refused" else "") for e in db.history()[seen:]] == entries


def test_release_is_idempotent_and_returns_what_it_freed(ledger):
    ledger.claim("u-web", "web1", [Want(VF1, "net0"), Want(VF2, "net1")])
    saved = Saved("eth2", 0, (("spoofchk", True), ("trust", False)))
    ledger.save_settings("u-web", VF1, saved)
    freed = ledger.release("u-web")
    assert [(x.vf, x.saved) for x in freed] == [(VF1, saved), (VF2, None)]
    assert ledger.release("u-web") == []
    assert ledger.leases() == []


def test_release_of_some_vfs_keeps_the_others(ledger):
    ledger.claim("u-web", "web1", [Want(VF1, "net0"), Want(VF2, "net1")])
    assert [x.vf for x in ledger.release("u-web", vfs=[VF2], reason="detached")] == [VF2]
    assert live(ledger) == [(VF1, "web1", "active")]
    assert ledger.history(vf=VF2)[-1].detail == "detached (active lease)"


def test_release_vf_by_hand_frees_whoever_holds_it(ledger):
    ledger.claim("u-web", "web1", [Want(VF1, "net0")])
    lease = ledger.release_vf(VF1, "released by hand")
    assert lease is not None and lease.domain_name == "web1"
    assert ledger.release_vf(VF1, "released by hand") is None
    events = [(e.action, e.outcome) for e in ledger.history(vf=VF1)]
    assert events[-2:] == [("release", "ok"), ("release", "noop")]


def test_save_settings_without_a_lease_is_an_error(ledger):
    with pytest.raises(LedgerError, match="holds no lease on VF"):
        ledger.save_settings("u-web", VF1, Saved("eth2", 0, (("trust", True),)))


def test_mark_started_records_the_time(ledger, clock):
    ledger.claim("u-web", "web1", [Want(VF1, "net0")])
    clock.now += 5
    ledger.mark_started("u-web")
    assert ledger.lease(VF1).started_at == clock.now


# --- staleness --------------------------------------------------------------------------------------------


def test_leases_of_another_boot_are_stale_and_taken_over(path, clock):
    with Ledger.open(path, boot_id="boot-1", clock=clock) as before:
        before.claim("u-web", "web1", [Want(VF1, "net0")])
    with Ledger.open(path, boot_id="boot-2", clock=clock) as after:
        assert after.lease(VF1).stale
        [lease] = after.claim("u-db", "db1", [Want(VF1, "net0")])
        assert (lease.domain_name, lease.boot_id, lease.stale) == ("db1", "boot-2", False)
        takeover = [e for e in after.history(vf=VF1) if e.action == "takeover"]
        assert takeover[0].detail == "stale: from an earlier boot: active lease of web1 (u-web)"


def test_a_reservation_expires_after_the_ttl(ledger, clock):
    ledger.reserve("u-web", "web1", [Want(VF1, "net0")])
    clock.now += 300
    assert not ledger.lease(VF1).stale
    with pytest.raises(VfBusy):
        ledger.claim("u-db", "db1", [Want(VF1, "net0")])
    clock.now += 1
    assert ledger.lease(VF1).stale
    assert ledger.claim("u-db", "db1", [Want(VF1, "net0")])[0].domain_name == "db1"


def test_an_active_lease_never_expires_by_ttl(ledger, clock):
    ledger.claim("u-web", "web1", [Want(VF1, "net0")])
    clock.now += 10 * 86400
    assert ledger.expire() == []
    assert live(ledger) == [(VF1, "web1", "active")]


def test_expire_removes_stale_leases_and_journals_each(path, clock):
    with Ledger.open(path, boot_id="boot-1", clock=clock) as before:
        before.claim("u-web", "web1", [Want(VF1, "net0")])
    with Ledger.open(path, boot_id="boot-2", ttl=60, clock=clock) as after:
        after.reserve("u-db", "db1", [Want(VF2, "net0")])
        after.reserve("u-app", "app1", [Want(VF3, "net0")])
        clock.now += 61
        after.reserve("u-app", "app1", [Want(VF3, "net0")])  # renewed: not stale
        expired = after.expire()
        assert sorted(x.vf for x in expired) == [VF1, VF2]
        assert live(after) == [(VF3, "app1", "reserved")]
        details = {e.vf: e.detail for e in after.history() if e.action == "expire"}
        assert details == {VF1: "stale: from an earlier boot", VF2: "stale: reservation older than 60 s"}


# --- sticky, release times, history -----------------------------------------------------------------------


def test_sticky_remembers_the_last_vf_of_each_nic_after_release(ledger):
    ledger.claim("u-web", "web1", [Want(VF1, "net0"), Want(VF2, "net1"), Want(VF3, None)])
    ledger.release("u-web")
    assert ledger.sticky("u-web") == {"net0": VF1, "net1": VF2}
    assert ledger.sticky("u-db") == {}


def test_last_released_records_when_each_vf_was_freed(ledger, clock):
    ledger.claim("u-web", "web1", [Want(VF1, "net0")])
    clock.now += 10
    ledger.release("u-web")
    assert ledger.last_released() == {VF1: clock.now}


def test_history_filters_by_domain_name_uuid_and_vf(ledger):
    ledger.claim("u-web", "web1", [Want(VF1, "net0")])
    ledger.claim("u-db", "db1", [Want(VF2, "net0")])
    ledger.release("u-web")
    assert [(e.action, e.vf) for e in ledger.history(domain="web1")] == [("claim", VF1), ("release", VF1)]
    assert ledger.history(domain="u-web") == ledger.history(domain="web1")
    assert [e.domain_name for e in ledger.history(vf=VF2)] == ["db1"]
    assert [e.action for e in ledger.history(limit=1)] == ["release"]


def test_the_journal_is_append_only(ledger, path):
    ledger.journal("note", "ok", detail="kept forever")
    db = sqlite3.connect(path)
    for sql in ("UPDATE events SET detail = 'x'", "DELETE FROM events"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(sql)
    db.close()
    assert ledger.history()[-1].detail == "kept forever"


def test_record_vfs_keeps_first_seen_and_updates_last_seen(ledger, path, clock):
    vfs = pf_vfs("eth2", 2)
    ledger.record_vfs(vfs)
    clock.now += 60
    ledger.record_vfs(vfs[:1])
    db = sqlite3.connect(path)
    rows = db.execute("SELECT address, pf, vf_index, model, first_seen, last_seen FROM vfs ORDER BY address")
    assert [r[:4] + (r[5] - r[4],) for r in rows] == [
        (str(vfs[0].address), "eth2", 0, vfs[0].model, 60.0),
        (str(vfs[1].address), "eth2", 1, vfs[1].model, 0.0),
    ]
    db.close()


# --- the file ---------------------------------------------------------------------------------------------


def test_file_is_0600_in_a_0700_directory_wal_and_synchronous_full(ledger, path):
    ledger.claim("u-web", "web1", [Want(VF1, "net0")])
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        assert stat.S_IMODE(name.stat().st_mode) == 0o600, name
    assert ledger._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ledger._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert ledger._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    assert [p.name for p in path.parent.iterdir() if ".new-" in p.name] == []  # no creation leftovers


def test_a_ledger_made_world_readable_is_closed_again(path):
    Ledger.open(path, boot_id="b").close()
    os.chmod(path, 0o644)
    Ledger.open(path, boot_id="b").close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_open_without_create_on_a_missing_file_says_so(path):
    with pytest.raises(LedgerError, match="does not exist"):
        Ledger.open(path, boot_id="b", create=False)
    assert not path.exists()


def test_boot_id_is_read_from_the_kernel_by_default(path):
    with Ledger.open(path) as opened:
        assert opened.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()


# --- schema versions --------------------------------------------------------------------------------------


def v1_file(path: Path) -> None:
    """A ledger written by vfplugin with schema version 1 (the checked-in fixture), with some history."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    for statement in FIXTURE_V1.read_text().split(";\n"):
        if statement.strip():
            db.execute(statement)
    db.commit()
    db.close()


def test_a_version_1_file_is_migrated_keeping_leases_and_history(path):
    v1_file(path)
    with Ledger.open(path, boot_id="boot-1") as migrated:
        assert migrated._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        [lease] = migrated.leases()
        assert (lease.vf, lease.domain_name, lease.state, lease.saved) == (VF1, "web1", "active", None)
        assert migrated.sticky("u-web") == {"net0": VF1}  # rebuilt from the v1 leases
        assert migrated.last_released() == {VF2: 1500.0}  # rebuilt from the v1 journal
        assert [e.action for e in migrated.history()] == ["claim", "claim", "release"]
        migrated.save_settings("u-web", VF1, Saved("eth2", 0, (("trust", False),)))  # the new columns work
        assert migrated.integrity() == []


def test_the_v1_fixture_matches_the_first_migration(tmp_path, path):
    """MIGRATIONS[0] must stay what version 1 was: the fixture is the file older vfplugins wrote."""
    from vfplugin.ledgerschema import MIGRATIONS

    fresh = tmp_path / "fresh.sqlite3"
    db = sqlite3.connect(fresh)
    for statement in MIGRATIONS[0]:
        db.execute(statement)
    v1_file(path)
    old = sqlite3.connect(path)

    def schema(conn: sqlite3.Connection) -> list[tuple[str, list[tuple[str, str]]]]:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY 1")]
        return [(t, [(c[1], c[2]) for c in conn.execute(f"PRAGMA table_info({t})")]) for t in tables]

    assert schema(db) == schema(old)
    db.close()
    old.close()


def test_fresh_and_migrated_files_have_the_same_tables(tmp_path, path):
    v1_file(path)
    Ledger.open(path, boot_id="b").close()
    Ledger.open(tmp_path / "fresh" / "ledger.sqlite3", boot_id="b").close()

    def columns(p: Path) -> dict[str, list[str]]:
        conn = sqlite3.connect(p)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        out = {t: sorted(c[1] for c in conn.execute(f"PRAGMA table_info({t})")) for t in tables}
        conn.close()
        return out

    assert columns(path) == columns(tmp_path / "fresh" / "ledger.sqlite3")


def test_a_file_from_a_newer_vfplugin_is_refused_and_left_untouched(path):
    Ledger.open(path, boot_id="b").close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.execute("CREATE TABLE future (x)")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(LedgerTooNew) as e:
        Ledger.open(path, boot_id="b")
    assert str(e.value) == (
        f"ledger {path}: schema version 99 is from a newer vfplugin (this one knows up to {SCHEMA_VERSION}); "
        "upgrade vfplugin; the file was left untouched"
    )
    assert path.read_bytes() == before


def v2_file(path: Path) -> None:
    """A ledger as vfplugin with schema version 2 wrote it: the v1 fixture taken through MIGRATIONS[1] only."""
    from vfplugin.ledgerschema import MIGRATIONS

    v1_file(path)
    db = sqlite3.connect(path)
    for statement in MIGRATIONS[1]:
        db.execute(statement)
    db.execute("""UPDATE leases SET saved = '{"pf": "eth2", "settings": {"trust": false, "vlan": 0}, "vf_index": 0}'""")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()


def test_a_version_2_file_is_migrated_keeping_leases_settings_and_history(path):
    v2_file(path)
    with Ledger.open(path, boot_id="boot-1") as migrated:
        assert migrated._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        [lease] = migrated.leases()
        assert (lease.vf, lease.domain_name, lease.saved) == (
            VF1, "web1", Saved("eth2", 0, (("vlan", 0), ("trust", False))))
        assert (lease.network, lease.port) == (None, None)  # taken by vfctl or the qemu hook, not a network
        assert [(e.action, e.network, e.duration) for e in migrated.history()] == [
            ("claim", None, None), ("claim", None, None), ("release", None, None)]
        # the new columns and table work
        migrated.claim("u-net", "net1", [Want(VF2, "net0", "52:54:00:00:00:02", network="vfnet", port="p-1")])
        assert (migrated.lease(VF2).network, migrated.lease(VF2).port) == ("vfnet", "p-1")  # type: ignore
        assert migrated.history()[-1].network == "vfnet"
        migrated.record_netnics("u-net", [NetNic("52:54:00:00:00:02", "net0", "vfnet", {"trust": True})])
        assert migrated.netnic("u-net", "52:54:00:00:00:02") == NetNic(
            "52:54:00:00:00:02", "net0", "vfnet", {"trust": True})
        assert migrated.integrity() == []


FIXTURE_V3 = Path(__file__).parent / "fixtures" / "ledger" / "v3.sql"


def test_a_version_3_file_written_by_vfplugin_keeps_what_release_must_undo(path):
    """Version 4 moved the JSON of version 3 into columns, in SQL: a file the previous vfplugin wrote."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.executescript(FIXTURE_V3.read_text())
    db.close()
    web, dbu = "11111111-2222-4333-8444-555555555555", "66666666-2222-4333-8444-555555555555"
    with Ledger.open(path, boot_id="boot-v3") as migrated:
        assert migrated._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        saved = {lease.vf: lease.saved for lease in migrated.leases()}
        assert saved == {
            VF1: Saved("eth2", 0, (("vlan", 0), ("qos", 0), ("spoofchk", True), ("trust", False),
                                    ("link_state", "auto"), ("max_tx_rate", 0))),
            VF2: Saved("eth3", 1, (), "br-offload", "eth3_1"),
            "0000:0a:10.2": None,
        }
        assert migrated.netnic(dbu, "52:54:00:00:00:02") == NetNic(
            "52:54:00:00:00:02", "net0", "vfnet", {"trust": True, "max_tx_rate": 100})
        assert [e.action for e in migrated.history(domain=web)] == ["claim", "claim"]
        assert migrated.sticky(web) == {"net0": VF1}
        assert migrated.integrity() == []
    # and what it now writes reads back the same
    with Ledger.open(path, boot_id="boot-v3") as ledger:
        ledger.save_settings(web, VF1, saved[VF1].with_port("br1", "eth2_0"))  # type: ignore[union-attr]
        assert ledger.lease(VF1).saved == Saved(  # type: ignore[union-attr]
            "eth2", 0, saved[VF1].settings, "br1", "eth2_0")  # type: ignore[union-attr]


def test_a_network_port_release_frees_only_leases_taken_through_that_network(path):
    with Ledger.open(path, boot_id="b") as ledger:
        ledger.claim("u-web", "web1", [Want(VF1, "net0"), Want(VF2, "net1", network="vfnet", port="p-2")])
        assert ledger.release("u-web", vfs=[VF1], network="vfnet", reason="port-deleted") == []
        [freed] = ledger.release("u-web", vfs=[VF2], network="vfnet", reason="port-deleted")
        assert freed.vf == VF2
        assert [lease.vf for lease in ledger.leases()] == [VF1]
