"""The ledger's event journal: one append-only table, written inside the transaction of the change it records.

Every change of the ledger journals (ledger.py calls ``append`` in its own transaction, so a change and its
entry are kept or lost together); triggers refuse any UPDATE or DELETE of an entry. Readers: ``vfctl
history``, doctor and the agent (``history``), the agent's poll (``last_id``), metrics (``summary``).
"""

from __future__ import annotations

import time

from .record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING would import typing: the hook avoids it (bench_hook)
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Sequence
    from typing import Any


class Event(Record):
    """One row of the append-only journal."""

    id: int
    time: float
    domain_uuid: str | None
    domain_name: str | None
    vf: str | None
    action: str
    outcome: str
    detail: str
    network: str | None = None  # the libvirt network the event came through
    duration: float | None = None  # seconds the hook event took, when measured


def append(
    db: sqlite3.Connection, now: float, action: str, outcome: str, domain_uuid: str | None,
    domain_name: str | None, vf: str | None, detail: str, network: str | None = None,
    started: float | None = None,
) -> None:
    """One entry, in the caller's transaction. ``started``: time.monotonic() when the hook event began (its
    duration so far is recorded: metrics' latency histogram, with no extra write)."""
    duration = time.monotonic() - started if started is not None else None
    db.execute(
        """INSERT INTO events (time, domain_uuid, domain_name, vf, action, outcome, detail, network, duration)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (now, domain_uuid, domain_name, vf, action, outcome, detail, network, duration),
    )


def history(
    db: sqlite3.Connection, domain: str | None = None, vf: str | None = None, limit: int | None = None,
    actions: Sequence[str] | None = None,
) -> list[Event]:
    """Entries, oldest first; ``domain`` matches a name or a UUID; ``actions`` keeps only those; ``limit`` keeps
    the newest."""
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
    rows = db.execute(sql, params).fetchall()
    return [Event(**{k: r[k] for k in r.keys()}) for r in reversed(rows)]


def last_id(db: sqlite3.Connection) -> int:
    """The newest entry's id (0 when empty)."""
    return int(db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])


def last_name(db: sqlite3.Connection, domain_uuid: str) -> str | None:
    """The name the journal last knew the domain ``domain_uuid`` by."""
    row = db.execute(
        """SELECT domain_name FROM events WHERE domain_uuid = ? AND domain_name IS NOT NULL
           ORDER BY id DESC LIMIT 1""", (domain_uuid,)).fetchone()
    return row[0] if row else None


def summary(db: sqlite3.Connection, bounds: Sequence[float]) -> dict[str, Any]:
    """The journal in a few aggregates (for metrics, without reading every entry): ``counts`` (action,
    outcome) -> entries; ``refusals``: the detail of every refusal, and of every release after a refused start;
    ``fixes``: the sum of the N in reconcile entries' "N fixes"; ``durations``: action -> (entries with a
    duration at or below each of ``bounds``, their count, their sum)."""
    buckets = ", ".join("sum(duration <= ?)" for _ in bounds)
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
