"""The ledger: which VF belongs to which domain on this host, and what happened to it, in one SQLite file.

Owns the leases (at most one per VF: a UNIQUE constraint, not a check in Python), the VFs seen, what sticky
allocation and least-recently-released ranking need, and what vfplugin changed on each held VF. Every change
runs in one ``BEGIN IMMEDIATE`` transaction together with its journal entries (journal.py), so a process
killed at any instruction leaves all of a change or none of it. Who may take a VF is leases.TAKE; the file,
its schema and what its SQLite failures mean are ledgerfile.py and ledgerschema.py.

It must never choose a VF (allocator.py does), never touch the host (sysfs, netlink, libvirt), and never
turn a SQLite failure into a silent success: every one becomes a one-line LedgerError naming the file and
what to do.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager

from . import journal
from .errors import InvalidValue, LedgerError, LedgerUnwritable, VfBusy, VfpluginError
from .journal import Event
from .leases import (
    ACTIVATE,
    INSERT,
    KEEP_ACTIVE,
    REFUSE,
    RENEW,
    SETTING_TYPES,
    TAKE,
    TAKE_OVER,
    Lease,
    NetNic,
    Saved,
    Snapshot,
    Want,
    holder,
    typed,
)
from .ledgerfile import connect, exists, read_boot_id, rollback, translate
from .ledgerschema import SCHEMA_VERSION

TYPE_CHECKING = False  # typing.TYPE_CHECKING would import typing: the hook avoids it (bench_hook)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import Any

    from _typeshed import StrPath

    from .inventory import VfInfo

    Pick = Callable[[Snapshot], Sequence[Want]]

__all__ = ["SCHEMA_VERSION", "Event", "FAULT_POINTS", "Lease", "Ledger", "NetNic", "Saved", "Snapshot", "Want",
           "exists", "read_boot_id"]

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


def _fault(point: str) -> None:
    if _FAULT is not None and _FAULT == point:
        import signal  # here, not at the top: the hook imports this module on every event

        os.kill(os.getpid(), signal.SIGKILL)


_SAVED_COLUMNS = tuple(f"saved_{key}" for key in SETTING_TYPES)


def _saved(row: sqlite3.Row) -> Saved | None:
    values = [(key, row[column]) for key, column in zip(SETTING_TYPES, _SAVED_COLUMNS)]
    settings = tuple((key, typed(key, value)) for key, value in values if value is not None)
    if not settings and row["representor"] is None:
        return None
    return Saved(row["saved_pf"], row["saved_vf_index"], settings, row["bridge"], row["representor"])


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
        self.started: float | None = None

    # -- opening ------------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls, path: StrPath, *, boot_id: str | None = None, ttl: int = 300, timeout: float = 10.0,
        clock: Callable[[], float] = time.time, create: bool = True,
    ) -> Ledger:
        """Open (creating it if ``create``) and migrate the ledger; ``create=False`` + no file raises."""
        path = os.fspath(path)  # a string: pathlib costs the hook more than opening the ledger
        boot = boot_id or read_boot_id()
        return cls(connect(path, timeout, create), path, boot, ttl, timeout, clock)

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

    def lease(self, vf: str) -> Lease | None:
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
        self, domain: str | None = None, vf: str | None = None, limit: int | None = None,
        actions: Sequence[str] | None = None,
    ) -> list[Event]:
        """Journal entries, oldest first (journal.history)."""
        with self._errors():
            return journal.history(self._conn, domain, vf, limit, actions)

    def last_event_id(self) -> int:
        """The newest journal entry's id (0 when empty): every change of the ledger journals, so a watcher
        (vfplugind) learns of claims and releases that raise no libvirt event by reading this one number."""
        with self._errors():
            return journal.last_id(self._conn)

    def journal_summary(self, bounds: Sequence[float]) -> dict[str, Any]:
        """The journal in a few aggregates, for metrics (journal.summary)."""
        with self._errors():
            return journal.summary(self._conn, bounds)

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

    def save_settings(self, domain_uuid: str, vf: str, saved: Saved) -> None:
        """Keep what vfplugin is changing on the VF (its settings before, the port it plugs), for release to
        undo; replaces what was kept."""
        settings = dict(saved.settings)
        unknown = sorted(set(settings) - set(SETTING_TYPES))
        if unknown:
            raise InvalidValue(what="saved VF setting", value=unknown[0], problem="not a setting vfplugin makes")
        values = [settings.get(key) for key in SETTING_TYPES]
        with self._write("save") as db:
            cursor = db.execute(
                f"""UPDATE leases SET saved_pf = ?, saved_vf_index = ?, {", ".join(f"{c} = ?" for c in _SAVED_COLUMNS)},
                       bridge = ?, representor = ? WHERE vf = ? AND domain_uuid = ?""",
                (saved.pf, saved.vf_index, *values, saved.bridge, saved.representor, vf, domain_uuid),
            )
            if cursor.rowcount != 1:
                raise LedgerError(
                    path=self.path,
                    problem=f"domain {domain_uuid} holds no lease on VF {vf} to save settings in",
                )

    def release(
        self, domain_uuid: str, *, vfs: Sequence[str] | None = None, reason: str = "stopped",
        domain_name: str | None = None, network: str | None = None,
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
                    domain_name = journal.last_name(db, domain_uuid)
                self._event(db, now, "release", "noop", domain_uuid, domain_name, None, f"{reason}: {what}",
                            network)
        return freed

    def record_netnics(self, domain_uuid: str, nics: Sequence[NetNic]) -> None:
        """Replace what this domain's network nics ask for (the qemu hook, at prepare begin)."""
        from .request import VF_SETTINGS  # here: started and release end never need it

        with self._write("netnics") as db:
            now = self._clock()
            db.execute("DELETE FROM netnics WHERE domain_uuid = ?", (domain_uuid,))
            db.executemany(
                f"""INSERT INTO netnics (domain_uuid, mac, nic_id, network, {", ".join(VF_SETTINGS)}, time)
                    VALUES (?, ?, ?, ?, {"?, " * len(VF_SETTINGS)}?)""",
                [(domain_uuid, n.mac.lower(), n.nic_id, n.network, *(n.settings.get(k) for k in VF_SETTINGS), now)
                 for n in nics],
            )

    def netnic(self, domain_uuid: str, mac: str) -> NetNic | None:
        """What the network nic with this MAC of this domain asks for; None when it asks nothing."""
        from .request import VF_SETTINGS

        with self._errors():
            row = self._conn.execute(
                "SELECT * FROM netnics WHERE domain_uuid = ? AND mac = ?", (domain_uuid, mac.lower())
            ).fetchone()
        if row is None:
            return None
        settings = {key: typed(key, row[key]) for key in VF_SETTINGS if row[key] is not None}
        return NetNic(row["mac"], row["nic_id"], row["network"], settings)

    def release_vf(self, vf: str, reason: str) -> Lease | None:
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
        self, action: str, outcome: str, *, domain_uuid: str | None = None,
        domain_name: str | None = None, vf: str | None = None, detail: str = "",
        network: str | None = None,
    ) -> None:
        with self._write("journal") as db:
            self._event(db, self._clock(), action, outcome, domain_uuid, domain_name, vf, detail, network)

    # -- internals ----------------------------------------------------------------------------------------

    def _take(
        self, op: str, domain_uuid: str, domain_name: str, wants: Sequence[Want], pick: Pick | None = None
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
        action = TAKE[op, holder(old, uuid)]
        if action == REFUSE:
            assert old is not None
            raise VfBusy(vf=want.vf, holder=old.domain_name, domain=name)
        if action == TAKE_OVER:
            assert old is not None
            db.execute("DELETE FROM leases WHERE vf = ?", (want.vf,))
            self._freed(db, now, want.vf)
            self._event(db, now, "takeover", "ok", uuid, name, want.vf,
                        f"{self._why_stale(old)}: {old.state} lease of {old.domain_name} ({old.domain_uuid})")
            _fault(f"{op}:after-takeover")
            action = INSERT
        if action == INSERT:
            db.execute(
                """INSERT INTO leases (vf, domain_uuid, domain_name, nic_id, mac, vlan, state, boot_id,
                                       reserved_at, activated_at, network, port)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (want.vf, uuid, name, want.nic_id, want.mac, want.vlan,
                 "active" if op == "claim" else "reserved", self.boot_id,
                 now if op == "reserve" else None, now if op == "claim" else None, want.network, want.port),
            )
        elif action in (ACTIVATE, KEEP_ACTIVE):
            db.execute(
                """UPDATE leases SET domain_name = ?, nic_id = ?, mac = ?, vlan = ?, state = 'active',
                       boot_id = ?, activated_at = COALESCE(?, activated_at),
                       network = COALESCE(?, network), port = COALESCE(?, port) WHERE vf = ?""",
                (name, want.nic_id, want.mac, want.vlan, self.boot_id,
                 now if action == ACTIVATE else None, want.network, want.port, want.vf),
            )
        else:
            assert action == RENEW
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
        self, db: sqlite3.Connection, now: float, action: str, outcome: str, domain_uuid: str | None,
        domain_name: str | None, vf: str | None, detail: str, network: str | None = None,
    ) -> None:
        journal.append(db, now, action, outcome, domain_uuid, domain_name, vf, detail, network, self.started)

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
            saved=_saved(row), stale=stale,
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
                rollback(self._conn)
                raise
        _fault(f"{op}:after-commit")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as e:
            raise translate(e, self.path, self.timeout) from None
        except OSError as e:
            raise LedgerUnwritable(path=self.path, problem=f"cannot use it: {e.strerror}",
                                   fix="check the file and its directory") from None


def _check_distinct(wants: Sequence[Want]) -> None:
    seen: set[str] = set()
    for want in wants:
        if want.vf in seen:
            raise InvalidValue(what="VF", value=want.vf, problem="asked for twice by one domain")
        seen.add(want.vf)
