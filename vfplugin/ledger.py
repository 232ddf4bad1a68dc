"""The ledger: which VF belongs to which domain on this host, and what happened to it, in one SQLite file.

Owns the file (created 0600 in a 0700 directory; WAL; ``synchronous=FULL``; schema version in
``PRAGMA user_version`` with forward migrations), the leases (at most one per VF: a UNIQUE constraint, not a
check in Python), the VFs seen, what sticky allocation and least-recently-released ranking need, and the
append-only event journal. Every change runs in one ``BEGIN IMMEDIATE`` transaction together with its journal
entries, so a process killed at any instruction leaves all of a change or none of it.

It must never choose a VF (allocator.py does), never touch the host (sysfs, netlink, libvirt), and never
turn a SQLite failure into a silent success: every one becomes a one-line LedgerError naming the file and
what to do.
"""

from __future__ import annotations

import _thread  # built in, unlike threading: no import cost on the hook's path
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from .errors import (
    InvalidValue,
    LedgerCorrupt,
    LedgerError,
    LedgerLocked,
    LedgerTooNew,
    LedgerUnwritable,
    VfBusy,
    VfpluginError,
)
from .record import Record

_UMASK_LOCK = _thread.allocate_lock()  # see Ledger.open

TYPE_CHECKING = False  # typing.TYPE_CHECKING would import typing: the hook avoids it (bench_hook)
if TYPE_CHECKING:
    from typing import Any, Optional

    from _typeshed import StrPath
    Pick = Callable[["Snapshot"], Sequence["Want"]]
    from .inventory import VfInfo

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"

# --- test-only fault points -----------------------------------------------------------------------------
# The crash tests run the real code path in a child with VFPLUGIN_FAULT=<point>; the child SIGKILLs itself
# there. Read once at import, so the cost when unset is one string comparison.
_FAULT = os.environ.get("VFPLUGIN_FAULT") or None
FAULT_POINTS = tuple(
    f"{op}:{step}"
    for op, steps in (
        ("claim", ("begin", "after-takeover", "after-insert", "after-journal", "before-commit",
                   "after-commit")),
        ("reserve", ("begin", "after-takeover", "after-insert", "after-journal", "before-commit",
                     "after-commit")),
        ("release", ("begin", "after-delete", "after-journal", "before-commit", "after-commit")),
        ("expire", ("begin", "after-delete", "before-commit", "after-commit")),
    )
    for step in steps
)


def _json_loads(text: str) -> Any:
    import json  # only for leases that carry saved VF settings

    return json.loads(text)


def _fault(point: str) -> None:
    if _FAULT is not None and _FAULT == point:
        import signal  # here, not at the top: the hook imports this module on every event

        os.kill(os.getpid(), signal.SIGKILL)


# --- schema ------------------------------------------------------------------------------------------------
# MIGRATIONS[n] takes a file from version n to n + 1; a new file runs them all. Statements are listed one by
# one because sqlite3's executescript() would COMMIT the surrounding BEGIN IMMEDIATE first.
_V1 = (
    """CREATE TABLE vfs (
        address    TEXT PRIMARY KEY,
        pf         TEXT NOT NULL,
        pf_address TEXT NOT NULL,
        vf_index   INTEGER NOT NULL,
        vendor_id  TEXT NOT NULL,
        device_id  TEXT NOT NULL,
        model      TEXT NOT NULL,
        numa_node  INTEGER,
        first_seen REAL NOT NULL,
        last_seen  REAL NOT NULL
    )""",
    """CREATE TABLE leases (
        vf           TEXT NOT NULL UNIQUE,
        domain_uuid  TEXT NOT NULL,
        domain_name  TEXT NOT NULL,
        nic_id       TEXT,
        mac          TEXT,
        vlan         INTEGER,
        state        TEXT NOT NULL CHECK (state IN ('reserved', 'active')),
        boot_id      TEXT NOT NULL,
        reserved_at  REAL,
        activated_at REAL,
        started_at   REAL
    )""",
    "CREATE INDEX leases_domain ON leases (domain_uuid)",
    """CREATE TABLE events (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        time        REAL NOT NULL,
        domain_uuid TEXT,
        domain_name TEXT,
        vf          TEXT,
        action      TEXT NOT NULL,
        outcome     TEXT NOT NULL,
        detail      TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX events_domain_uuid ON events (domain_uuid)",
    "CREATE INDEX events_domain_name ON events (domain_name)",
    "CREATE INDEX events_vf ON events (vf)",
    """CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'the event journal is append-only'); END""",
    """CREATE TRIGGER events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'the event journal is append-only'); END""",
)
_V2 = (
    # the VF settings found before vfplugin changed them (JSON), so release can restore them
    "ALTER TABLE leases ADD COLUMN saved TEXT",
    # the VF each (domain, nic) had last, for sticky allocation
    """CREATE TABLE sticky (
        domain_uuid TEXT NOT NULL,
        nic_id      TEXT NOT NULL,
        vf          TEXT NOT NULL,
        time        REAL NOT NULL,
        PRIMARY KEY (domain_uuid, nic_id)
    )""",
    # when each VF was last freed, for least-recently-released ranking
    "CREATE TABLE released (vf TEXT PRIMARY KEY, time REAL NOT NULL)",
    """INSERT INTO sticky (domain_uuid, nic_id, vf, time)
        SELECT domain_uuid, nic_id, vf, COALESCE(activated_at, reserved_at, 0) FROM leases
        WHERE nic_id IS NOT NULL""",
    """INSERT INTO released (vf, time)
        SELECT vf, MAX(time) FROM events
        WHERE action IN ('release', 'expire', 'takeover') AND outcome = 'ok' AND vf IS NOT NULL
        GROUP BY vf""",
)
_V3 = (
    # a lease taken through a libvirt hostdev network (the network hook's port-created): the network and the
    # UUID of the libvirt port that holds it; NULL for leases vfctl or the qemu hook took
    "ALTER TABLE leases ADD COLUMN network TEXT",
    "ALTER TABLE leases ADD COLUMN port TEXT",
    "ALTER TABLE events ADD COLUMN network TEXT",
    # how long the hook event took, in seconds (NULL when not measured)
    "ALTER TABLE events ADD COLUMN duration REAL",
    # what a domain's network nics (<vfp:nic network=...>) ask for, recorded by the qemu hook at prepare begin
    # so that the network hook's port-created, which sees only the port's MAC, can apply it
    """CREATE TABLE netnics (
        domain_uuid TEXT NOT NULL,
        mac         TEXT NOT NULL,
        nic_id      TEXT NOT NULL,
        network     TEXT NOT NULL,
        settings    TEXT NOT NULL,
        time        REAL NOT NULL,
        PRIMARY KEY (domain_uuid, mac)
    )""",
)
MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3)
SCHEMA_VERSION = len(MIGRATIONS)


# --- values ------------------------------------------------------------------------------------------------


class Want(Record):
    """One VF a domain asks the ledger for."""

    vf: str
    nic_id: Optional[str]  # None: an adopted hand-written hostdev
    mac: Optional[str] = None
    vlan: Optional[int] = None
    network: Optional[str] = None  # taken through this libvirt network's port (the network hook)
    port: Optional[str] = None  # that port's UUID


class Lease(Record):
    """One row of the leases table: a VF held (reserved or active) by a domain."""

    vf: str
    domain_uuid: str
    domain_name: str
    nic_id: Optional[str]
    mac: Optional[str]
    vlan: Optional[int]
    state: str  # "reserved" | "active"
    boot_id: str
    reserved_at: Optional[float]
    activated_at: Optional[float]
    started_at: Optional[float]
    saved: Optional[dict[str, Any]]  # the VF settings found before vfplugin changed them
    stale: bool  # another boot_id, or a reservation past its TTL: claim/reserve/expire may take it
    network: Optional[str] = None  # held through this libvirt network's port (the network hook)
    port: Optional[str] = None  # that port's UUID


class NetNic(Record):
    """What one network nic of a domain (``<vfp:nic network=...>``) asks for, keyed by its MAC."""

    __slots__ = ("mac", "nic_id", "network", "settings")

    def __init__(self, mac: str, nic_id: str, network: str, settings: dict[str, Any]) -> None:
        # settings: configure.py's names (trust, spoofchk, link_state, min_tx_rate, max_tx_rate, ...)
        self.mac, self.nic_id, self.network, self.settings = mac.lower(), nic_id, network, settings


class Event(Record):
    """One row of the append-only journal."""

    id: int
    time: float
    domain_uuid: Optional[str]
    domain_name: Optional[str]
    vf: Optional[str]
    action: str
    outcome: str
    detail: str
    network: Optional[str] = None  # the libvirt network the event came through
    duration: Optional[float] = None  # seconds the hook event took, when measured


_NOTHING: Mapping[str, Any] = {}


class Snapshot(Record):
    """What an allocation needs, read inside the transaction that will reserve the result."""

    leases: tuple[Lease, ...]
    sticky: Mapping[str, str] = _NOTHING  # nic id -> the VF it had last
    last_released: Mapping[str, float] = _NOTHING  # VF -> when it was last released


def exists(path: StrPath) -> bool:
    """Whether the ledger file exists; a file this user may not even look at raises (not "no ledger")."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise LedgerUnwritable(path=str(path), problem=f"cannot look at it: {e.strerror}",
                               fix="run as root (the ledger is private to root)") from None
    return True


def read_boot_id(path: StrPath = BOOT_ID_PATH) -> str:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except OSError as e:
        raise LedgerError(path=str(path), problem=f"cannot read the boot id: {e.strerror}") from None


# --- the ledger --------------------------------------------------------------------------------------------


class Ledger:
    """One open ledger file. Use ``Ledger.open(path)``, as a context manager or closing it by hand."""

    def __init__(
        self, conn: sqlite3.Connection, path: str, boot_id: str, ttl: int, timeout: float,
        clock: Callable[[], float],
    ) -> None:
        self._conn = conn
        self.path = path
        self.boot_id = boot_id
        self.ttl = ttl
        self.timeout = timeout
        self._clock = clock
        # time.monotonic() when the hook event that opened this ledger began (hook.py sets it): every journal
        # entry then records how long the event had taken when it was written (events.duration; metrics.py's
        # latency histogram), in the transaction it already makes, with no extra write
        self.started: Optional[float] = None

    # -- opening ------------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls, path: StrPath, *, boot_id: Optional[str] = None, ttl: int = 300, timeout: float = 10.0,
        clock: Callable[[], float] = time.time, create: bool = True,
    ) -> Ledger:
        """Open (creating it if ``create``) and migrate the ledger; ``create=False`` + no file raises."""
        path = os.fspath(path)  # a string: pathlib costs the hook more than opening the ledger
        boot = boot_id or read_boot_id()
        # 077 also covers the -wal and -shm files SQLite creates next to the file on every first open. The umask
        # is the process's, not the thread's: threads of one process (the agent's) take turns, or one of them
        # would "restore" the 077 another set and leave the whole process creating files private.
        _UMASK_LOCK.acquire()
        old_umask = os.umask(0o077)
        try:
            if not exists(path):
                if not create:
                    raise LedgerError(path=path, problem="does not exist (nothing was ever allocated)")
                _ensure_dir(path)
                _create(path)
            _tighten(path)
            try:
                conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
            except sqlite3.Error as e:
                raise _translate(e, path, timeout) from None
            conn.row_factory = sqlite3.Row
            ledger = cls(conn, path, boot, ttl, timeout, clock)
            try:
                ledger._prepare()
            except BaseException:
                conn.close()
                raise
        finally:
            os.umask(old_umask)
            _UMASK_LOCK.release()
        return ledger

    def _prepare(self) -> None:
        with self._errors():
            if os.stat(self.path).st_size == 0:
                # SQLite would take an empty file for a new ledger; vfplugin never leaves one (see _create),
                # so it is damage, and starting afresh could hand out VFs that running domains hold.
                raise LedgerCorrupt(path=self.path, problem="empty file")
            self._conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            version = self._version()  # before anything writes: a newer file is left untouched
            if version == 0 and self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise LedgerCorrupt(path=self.path, problem="not a vfplugin ledger (foreign tables)")
            if self._conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            if version < SCHEMA_VERSION:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    _migrate(self._conn, self._version())  # re-read: another process may have migrated
                    self._conn.execute("COMMIT")
                except BaseException:
                    _rollback(self._conn)
                    raise

    def _version(self) -> int:
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise LedgerTooNew(path=self.path, found=version, known=SCHEMA_VERSION)
        return version

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ------------------------------------------------------------------------------------------

    def leases(self) -> list[Lease]:
        with self._errors():
            rows = self._conn.execute("SELECT * FROM leases ORDER BY vf").fetchall()
        now = self._clock()
        return [self._lease(r, now) for r in rows]

    def lease(self, vf: str) -> Optional[Lease]:
        with self._errors():
            row = self._conn.execute("SELECT * FROM leases WHERE vf = ?", (vf,)).fetchone()
        return self._lease(row, self._clock()) if row else None

    def sticky(self, domain_uuid: str) -> dict[str, str]:
        """nic id -> the VF that nic of this domain had last."""
        with self._errors():
            rows = self._conn.execute("SELECT nic_id, vf FROM sticky WHERE domain_uuid = ?", (domain_uuid,))
            return {r["nic_id"]: r["vf"] for r in rows}

    def last_released(self) -> dict[str, float]:
        """VF -> when it was last freed (a VF never freed is absent)."""
        with self._errors():
            return {r["vf"]: r["time"] for r in self._conn.execute("SELECT vf, time FROM released")}

    def history(
        self, domain: Optional[str] = None, vf: Optional[str] = None, limit: Optional[int] = None,
        actions: Optional[Sequence[str]] = None,
    ) -> list[Event]:
        """Journal entries, oldest first; ``domain`` matches a name or a UUID; ``actions`` keeps only those;
        ``limit`` keeps the newest."""
        where, params = [], []
        if actions is not None:
            where.append(f"action IN ({', '.join('?' * len(actions))})")
            params += list(actions)
        if domain is not None:
            where.append("(domain_uuid = ? OR domain_name = ?)")
            params += [domain, domain]
        if vf is not None:
            where.append("vf = ?")
            params.append(vf)
        sql = "SELECT * FROM events" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._errors():
            rows = self._conn.execute(sql, params).fetchall()
        return [Event(**{k: r[k] for k in r.keys()}) for r in reversed(rows)]

    def last_event_id(self) -> int:
        """The newest journal entry's id (0 when empty): every change of the ledger journals, so a watcher
        (vfplugind) learns of claims and releases that raise no libvirt event by reading this one number."""
        with self._errors():
            return int(self._conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])

    def journal_summary(self, bounds: Sequence[float]) -> dict[str, Any]:
        """The journal in a few aggregates (for metrics, without reading every entry): ``counts`` (action,
        outcome) -> entries; ``refusals``: the detail of every refusal, and of every release after a refused
        start; ``fixes``: the sum of the N in reconcile entries' "N fixes"; ``durations``: action -> (entries
        with a duration at or below each of ``bounds``, their count, their sum)."""
        buckets = ", ".join("sum(duration <= ?)" for _ in bounds)
        with self._errors():
            db = self._conn
            counts = {(r[0], r[1]): r[2] for r in db.execute(
                "SELECT action, outcome, count(*) FROM events GROUP BY action, outcome")}
            refusals = [r[0] for r in db.execute(
                """SELECT detail FROM events WHERE outcome = 'refused'
                   OR (action = 'release' AND detail LIKE 'start refused:%') ORDER BY id""")]
            fixes = db.execute(
                "SELECT coalesce(sum(CAST(detail AS INTEGER)), 0) FROM events WHERE action = 'reconcile'"
            ).fetchone()[0]
            durations = {r[0]: (tuple(r[3:]), r[1], r[2]) for r in db.execute(
                f"""SELECT action, count(*), sum(duration){', ' + buckets if bounds else ''} FROM events
                    WHERE duration IS NOT NULL GROUP BY action ORDER BY action""", tuple(bounds))}
        return {"counts": counts, "refusals": refusals, "fixes": int(fixes), "durations": durations}

    def integrity(self) -> list[str]:
        """``PRAGMA integrity_check`` problems; empty when the file is sound."""
        with self._errors():
            rows = [r[0] for r in self._conn.execute("PRAGMA integrity_check")]
        return [] if rows == ["ok"] else rows

    # -- changing -----------------------------------------------------------------------------------------

    def record_vfs(self, vfs: Sequence[VfInfo]) -> None:
        """Remember the VFs discovery found (first and last time seen)."""
        with self._write("record") as db:
            now = self._clock()
            db.executemany(
                """INSERT INTO vfs (address, pf, pf_address, vf_index, vendor_id, device_id, model, numa_node,
                                    first_seen, last_seen)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (address) DO UPDATE SET
                     pf = excluded.pf, pf_address = excluded.pf_address, vf_index = excluded.vf_index,
                     vendor_id = excluded.vendor_id, device_id = excluded.device_id, model = excluded.model,
                     numa_node = excluded.numa_node, last_seen = excluded.last_seen""",
                [
                    (str(v.address), v.pf, str(v.pf_address), v.vf_index, v.vendor_id, v.device_id, v.model,
                     v.numa_node, now, now)
                    for v in vfs
                ],
            )

    def reserve(self, domain_uuid: str, domain_name: str, wants: Sequence[Want]) -> list[Lease]:
        """Reserve VFs for a domain about to start (all or nothing); a reservation expires after the TTL."""
        return self._take("reserve", domain_uuid, domain_name, wants)

    def claim(self, domain_uuid: str, domain_name: str, wants: Sequence[Want]) -> list[Lease]:
        """Make the domain's leases active (all or nothing). A VF that is free, reserved or active for this
        domain, or held by a stale lease, is taken; one held live by another domain raises VfBusy and nothing
        changes."""
        return self._take("claim", domain_uuid, domain_name, wants)

    def allocate(self, domain_uuid: str, domain_name: str, pick: Pick) -> list[Lease]:
        """Reserve what ``pick`` chooses from a snapshot read in the same write transaction, so that many
        processes allocating at once each see the others' reservations (no retry loop, no double allocation).
        ``pick`` (rewrite.assign_and_reserve's runs the allocator): its NoCandidate propagates and is journaled."""
        return self._take("reserve", domain_uuid, domain_name, (), pick=pick)

    def mark_started(self, domain_uuid: str) -> None:
        with self._write("started") as db:
            now = self._clock()
            active = "domain_uuid = ? AND state = 'active'"
            rows = db.execute(f"SELECT vf, domain_name FROM leases WHERE {active}", (domain_uuid,)).fetchall()
            db.execute(f"UPDATE leases SET started_at = ? WHERE {active}", (now, domain_uuid))
            for r in rows:
                self._event(db, now, "started", "ok", domain_uuid, r["domain_name"], r["vf"], "")
            if not rows:
                self._event(db, now, "started", "noop", domain_uuid, None, None, "no active lease")

    def save_settings(self, domain_uuid: str, vf: str, saved: dict[str, Any]) -> None:
        """Keep the VF settings found before vfplugin changed them, for release to restore."""
        import json

        text = json.dumps(saved, sort_keys=True)
        with self._write("save") as db:
            cursor = db.execute(
                "UPDATE leases SET saved = ? WHERE vf = ? AND domain_uuid = ?", (text, vf, domain_uuid)
            )
            if cursor.rowcount != 1:
                raise LedgerError(
                    path=self.path,
                    problem=f"domain {domain_uuid} holds no lease on VF {vf} to save settings in",
                )

    def release(
        self, domain_uuid: str, *, vfs: Optional[Sequence[str]] = None, reason: str = "stopped",
        domain_name: Optional[str] = None, network: Optional[str] = None,
    ) -> list[Lease]:
        """Free this domain's leases (only those in ``vfs`` when given; only those held through the libvirt
        network ``network`` when given). Idempotent: nothing held -> [] and a 'noop' journal entry. Never frees
        another domain's lease."""
        with self._write("release") as db:
            _fault("release:begin")
            now = self._clock()
            rows = db.execute(
                "SELECT * FROM leases WHERE domain_uuid = ? ORDER BY vf", (domain_uuid,)
            ).fetchall()
            freed = [self._lease(r, now) for r in rows
                     if (vfs is None or r["vf"] in vfs) and (network is None or r["network"] == network)]
            for lease in freed:
                db.execute("DELETE FROM leases WHERE vf = ? AND domain_uuid = ?", (lease.vf, domain_uuid))
                _fault("release:after-delete")
                self._freed(db, now, lease.vf)
                self._event(db, now, "release", "ok", domain_uuid, lease.domain_name, lease.vf,
                            f"{reason} ({lease.state} lease)", lease.network)
                _fault("release:after-journal")
            if not freed:
                what = f"no lease on {', '.join(vfs)}" if vfs else "no lease held"
                if domain_name is None:  # name the domain in its history all the same
                    row = db.execute(
                        """SELECT domain_name FROM events WHERE domain_uuid = ? AND domain_name IS NOT NULL
                           ORDER BY id DESC LIMIT 1""", (domain_uuid,)).fetchone()
                    domain_name = row[0] if row else None
                self._event(db, now, "release", "noop", domain_uuid, domain_name, None, f"{reason}: {what}",
                            network)
        return freed

    def record_netnics(self, domain_uuid: str, nics: Sequence[NetNic]) -> None:
        """Replace what this domain's network nics ask for (the qemu hook, at prepare begin)."""
        import json

        with self._write("netnics") as db:
            now = self._clock()
            db.execute("DELETE FROM netnics WHERE domain_uuid = ?", (domain_uuid,))
            db.executemany(
                "INSERT INTO netnics (domain_uuid, mac, nic_id, network, settings, time) VALUES (?, ?, ?, ?, ?, ?)",
                [(domain_uuid, n.mac, n.nic_id, n.network, json.dumps(n.settings, sort_keys=True), now)
                 for n in nics],
            )

    def netnic(self, domain_uuid: str, mac: str) -> Optional[NetNic]:
        """What the network nic with this MAC of this domain asks for; None when it asks nothing."""
        with self._errors():
            row = self._conn.execute(
                "SELECT * FROM netnics WHERE domain_uuid = ? AND mac = ?", (domain_uuid, mac.lower())
            ).fetchone()
        if row is None:
            return None
        return NetNic(row["mac"], row["nic_id"], row["network"], _json_loads(row["settings"]))

    def release_vf(self, vf: str, reason: str) -> Optional[Lease]:
        """Free one VF whoever holds it (``vfctl release --vf``); None when it was free (journaled too)."""
        with self._write("release-vf") as db:
            now = self._clock()
            row = db.execute("SELECT * FROM leases WHERE vf = ?", (vf,)).fetchone()
            if row is None:
                self._event(db, now, "release", "noop", None, None, vf, f"{reason}: no lease")
                return None
            lease = self._lease(row, now)
            db.execute("DELETE FROM leases WHERE vf = ?", (vf,))
            self._freed(db, now, vf)
            self._event(db, now, "release", "ok", lease.domain_uuid, lease.domain_name, vf,
                        f"{reason} ({lease.state} lease)", lease.network)
        return lease

    def expire(self) -> list[Lease]:
        """Remove stale leases (another boot_id, or a reservation past its TTL), journaling each."""
        with self._write("expire") as db:
            _fault("expire:begin")
            now = self._clock()
            stale = [lease for lease in map(lambda r: self._lease(r, now), db.execute("SELECT * FROM leases"))
                     if lease.stale]
            for lease in stale:
                db.execute("DELETE FROM leases WHERE vf = ?", (lease.vf,))
                _fault("expire:after-delete")
                self._freed(db, now, lease.vf)
                self._event(db, now, "expire", "ok", lease.domain_uuid, lease.domain_name, lease.vf,
                            self._why_stale(lease), lease.network)
        return stale

    def journal(
        self, action: str, outcome: str, *, domain_uuid: Optional[str] = None,
        domain_name: Optional[str] = None, vf: Optional[str] = None, detail: str = "",
        network: Optional[str] = None,
    ) -> None:
        with self._write("journal") as db:
            self._event(db, self._clock(), action, outcome, domain_uuid, domain_name, vf, detail, network)

    # -- internals ----------------------------------------------------------------------------------------

    def _take(
        self, op: str, domain_uuid: str, domain_name: str, wants: Sequence[Want], pick: Optional[Pick] = None
    ) -> list[Lease]:
        try:
            with self._write(op) as db:
                _fault(f"{op}:begin")
                now = self._clock()
                if pick is not None:
                    wants = list(pick(self._snapshot(db, domain_uuid, now)))
                _check_distinct(wants)
                for want in wants:
                    self._take_one(db, op, now, domain_uuid, domain_name, want)
                rows = [db.execute("SELECT * FROM leases WHERE vf = ?", (w.vf,)).fetchone() for w in wants]
            return [self._lease(r, now) for r in rows]
        except VfpluginError as e:
            if isinstance(e, (LedgerError, InvalidValue)):
                raise
            # VfBusy / NoCandidate: nothing changed; say so in the journal (best effort: the refusal matters
            # more than its record)
            try:
                self.journal(op, "refused", domain_uuid=domain_uuid, domain_name=domain_name,
                             vf=e.kwargs.get("vf"), detail=str(e))
            except LedgerError:
                pass
            raise

    def _take_one(
        self, db: sqlite3.Connection, op: str, now: float, uuid: str, name: str, want: Want
    ) -> None:
        row = db.execute("SELECT * FROM leases WHERE vf = ?", (want.vf,)).fetchone()
        old = self._lease(row, now) if row else None
        if old is not None and old.domain_uuid != uuid:
            if not old.stale:
                raise VfBusy(vf=want.vf, holder=old.domain_name, domain=name)
            db.execute("DELETE FROM leases WHERE vf = ?", (want.vf,))
            self._freed(db, now, want.vf)
            self._event(db, now, "takeover", "ok", uuid, name, want.vf,
                        f"{self._why_stale(old)}: {old.state} lease of {old.domain_name} ({old.domain_uuid})")
            _fault(f"{op}:after-takeover")
            old = None
        if old is None:
            db.execute(
                """INSERT INTO leases (vf, domain_uuid, domain_name, nic_id, mac, vlan, state, boot_id,
                                       reserved_at, activated_at, network, port)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (want.vf, uuid, name, want.nic_id, want.mac, want.vlan,
                 "active" if op == "claim" else "reserved", self.boot_id,
                 now if op == "reserve" else None, now if op == "claim" else None, want.network, want.port),
            )
        elif op == "claim" or (old.state == "active" and not old.stale):
            # claiming this domain's own lease; or reserving a VF this domain already runs with: stays active
            db.execute(
                """UPDATE leases SET domain_name = ?, nic_id = ?, mac = ?, vlan = ?, state = 'active',
                       boot_id = ?, activated_at = COALESCE(?, activated_at),
                       network = COALESCE(?, network), port = COALESCE(?, port) WHERE vf = ?""",
                (name, want.nic_id, want.mac, want.vlan, self.boot_id,
                 now if op == "claim" else None, want.network, want.port, want.vf),
            )
        else:  # renew this domain's reservation
            db.execute(
                """UPDATE leases SET domain_name = ?, nic_id = ?, mac = ?, vlan = ?, state = 'reserved',
                       boot_id = ?, reserved_at = ?, activated_at = NULL, started_at = NULL WHERE vf = ?""",
                (name, want.nic_id, want.mac, want.vlan, self.boot_id, now, want.vf),
            )
        _fault(f"{op}:after-insert")
        if want.nic_id is not None:
            db.execute(
                """INSERT INTO sticky (domain_uuid, nic_id, vf, time) VALUES (?, ?, ?, ?)
                   ON CONFLICT (domain_uuid, nic_id) DO UPDATE SET vf = excluded.vf, time = excluded.time""",
                (uuid, want.nic_id, want.vf, now),
            )
        nic = f"nic {want.nic_id}" if want.nic_id else "adopted hostdev"
        if want.network is not None:
            nic = f"nic {want.nic_id}, port {want.port}" if want.nic_id else f"port {want.port}"
        self._event(db, now, op, "ok", uuid, name, want.vf, nic, want.network)
        _fault(f"{op}:after-journal")

    def _snapshot(self, db: sqlite3.Connection, domain_uuid: str, now: float) -> Snapshot:
        leases = tuple(self._lease(r, now) for r in db.execute("SELECT * FROM leases ORDER BY vf"))
        sticky = {r["nic_id"]: r["vf"] for r in db.execute(
            "SELECT nic_id, vf FROM sticky WHERE domain_uuid = ?", (domain_uuid,))}
        released = {r["vf"]: r["time"] for r in db.execute("SELECT vf, time FROM released")}
        return Snapshot(leases, sticky, released)

    def _freed(self, db: sqlite3.Connection, now: float, vf: str) -> None:
        db.execute(
            """INSERT INTO released (vf, time) VALUES (?, ?)
               ON CONFLICT (vf) DO UPDATE SET time = excluded.time""",
            (vf, now),
        )

    def _event(
        self, db: sqlite3.Connection, now: float, action: str, outcome: str, domain_uuid: Optional[str],
        domain_name: Optional[str], vf: Optional[str], detail: str, network: Optional[str] = None,
    ) -> None:
        duration = time.monotonic() - self.started if self.started is not None else None
        db.execute(
            """INSERT INTO events (time, domain_uuid, domain_name, vf, action, outcome, detail, network, duration)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (now, domain_uuid, domain_name, vf, action, outcome, detail, network, duration),
        )

    def _lease(self, row: sqlite3.Row, now: float) -> Lease:
        reserved_at = row["reserved_at"]
        stale = row["boot_id"] != self.boot_id or (
            row["state"] == "reserved" and reserved_at is not None and now - reserved_at > self.ttl
        )
        return Lease(
            vf=row["vf"], domain_uuid=row["domain_uuid"], domain_name=row["domain_name"],
            nic_id=row["nic_id"],
            mac=row["mac"], vlan=row["vlan"], state=row["state"], boot_id=row["boot_id"],
            reserved_at=row["reserved_at"], activated_at=row["activated_at"], started_at=row["started_at"],
            saved=_json_loads(row["saved"]) if row["saved"] else None, stale=stale,
            network=row["network"], port=row["port"],
        )

    def _why_stale(self, lease: Lease) -> str:
        if lease.boot_id != self.boot_id:
            return "stale: from an earlier boot"
        return f"stale: reservation older than {self.ttl} s"

    @contextmanager
    def _write(self, op: str) -> Iterator[sqlite3.Connection]:
        """One BEGIN IMMEDIATE transaction: the write lock is taken up front, so two writers never both read
        a VF as free; an exception rolls everything back."""
        with self._errors():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                _fault(f"{op}:before-commit")
                self._conn.execute("COMMIT")
            except BaseException:
                _rollback(self._conn)
                raise
        _fault(f"{op}:after-commit")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as e:
            raise _translate(e, self.path, self.timeout) from None
        except OSError as e:
            raise LedgerUnwritable(path=self.path, problem=f"cannot use it: {e.strerror}",
                                   fix="check the file and its directory") from None


# --- file handling -----------------------------------------------------------------------------------------


def _translate(e: sqlite3.Error, path: str, timeout: float) -> LedgerError:
    """One SQLite failure -> one line naming the file and what to do."""
    name = getattr(e, "sqlite_errorname", "") or ""  # Python 3.11+
    text = f"{name} {e}".lower()
    where, directory = path, _directory(path)
    if "locked" in text or "busy" in text:
        return LedgerLocked(path=where, timeout=timeout)
    if "not a database" in text or "notadb" in text or "malformed" in text or "corrupt" in text:
        return LedgerCorrupt(path=where, problem=str(e))
    if "readonly" in text or "read-only" in text:
        return LedgerUnwritable(path=where, problem="read-only (attempt to write a readonly database)",
            fix=f"make it and {directory} writable for this user (vfplugin runs as root)")
    if "full" in text:
        return LedgerUnwritable(path=where, problem="the disk is full",
                                fix=f"free space on the file system holding {directory}")
    if "unable to open" in text or "cantopen" in text:
        return LedgerUnwritable(path=where, problem="cannot be opened",
                                fix=f"check that {directory} exists and is writable for this user")
    if "i/o error" in text or "ioerr" in text:
        if _nearly_full(directory):  # e.g. SQLITE_IOERR_SHMSIZE: the -shm file could not grow
            return LedgerUnwritable(path=where, problem="the disk is full",
                                    fix=f"free space on the file system holding {directory}")
        return LedgerUnwritable(path=where, problem="disk I/O error",
                                fix="check the file system (dmesg, df) before retrying")
    return LedgerError(path=where, problem=f"{type(e).__name__}: {e}")


def _directory(path: str) -> str:
    """The directory holding the ledger file (``.`` for a bare file name, where os.path.dirname says "")."""
    return os.path.dirname(path) or "."


def _nearly_full(directory: str) -> bool:
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024 or (st.f_files > 0 and st.f_favail == 0)


def _ensure_dir(path: str) -> None:
    directory = _directory(path)
    if os.path.isdir(directory):
        return
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as e:
        raise LedgerUnwritable(path=path, problem=f"cannot create directory {directory}: {e.strerror}",
                               fix=f"create it with 'install -d -m 0700 {directory}' as root") from None


def _create(path: str) -> None:
    """Build a fresh ledger under a temporary name and link it into place, so the real path never holds a
    half-made or empty file and two processes creating it at once agree on one file (link is atomic)."""
    directory = _directory(path)
    # Named for the process and the thread: two threads of one process (the agent's) may create it at once.
    tmp = os.path.join(directory, f".{os.path.basename(path)}.new-{os.getpid()}-{_thread.get_ident()}")
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")  # persistent in the file header
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN IMMEDIATE")
            _migrate(conn, 0)
            conn.execute("COMMIT")
        finally:
            conn.close()
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first; use theirs
        _fsync_dir(directory)
    except sqlite3.Error as e:
        raise _translate(e, path, 0) from None
    except OSError as e:
        raise LedgerUnwritable(
            path=path, problem=f"cannot create: {e.strerror}",
            fix=f"check that {directory} is writable for this user (vfplugin runs as root)",
        ) from None
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.unlink(f"{tmp}{suffix}")
            except OSError:
                pass


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tighten(path: str) -> None:
    """A ledger made readable to others (by hand, by a backup tool) is closed again: it names every domain."""
    for name in (path, f"{path}-wal", f"{path}-shm"):
        try:
            st = os.stat(name)
        except OSError:
            continue
        if st.st_mode & 0o077 and st.st_uid == os.geteuid():
            try:
                os.chmod(name, 0o600)
            except OSError:
                pass


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    """Inside the caller's transaction: apply MIGRATIONS[version:] and record the new version."""
    for step in MIGRATIONS[version:]:
        for statement in step:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the connection is unusable anyway; the caller reports the original error


def _check_distinct(wants: Sequence[Want]) -> None:
    seen: set[str] = set()
    for want in wants:
        if want.vf in seen:
            raise InvalidValue(what="VF", value=want.vf, problem="asked for twice by one domain")
        seen.add(want.vf)
