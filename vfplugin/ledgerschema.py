"""The ledger's SQLite schema: every version's statements, and the forward migrations between them.

``MIGRATIONS[n]`` takes a file from version n to n + 1 (``PRAGMA user_version``); a new file runs them all, so
a fresh file and a migrated one are the same (test_ledger checks both, and that ``MIGRATIONS[0]`` is still
what version 1 files hold). Statements are listed one by one because sqlite3's executescript() would COMMIT
the surrounding BEGIN IMMEDIATE first. A migration never needs Python beyond running its statements: data
moves in SQL (``json_extract`` for what version 2 kept as JSON).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING would import typing: the hook avoids it (bench_hook)
if TYPE_CHECKING:
    import sqlite3

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
_V4 = (
    # What release undoes, in columns rather than JSON (leases.Saved): the settings the VF had before vfplugin
    # changed them (NULL: not changed), on VF saved_vf_index of saved_pf, and the OVS port it plugged. Reading
    # them needs no JSON parser, which costs a hook event with VF settings a tenth of its run. Literal SQL,
    # like every migration: what a version was must never change with the code around it.
    """CREATE TABLE leases_v4 (
        vf                TEXT NOT NULL UNIQUE,
        domain_uuid       TEXT NOT NULL,
        domain_name       TEXT NOT NULL,
        nic_id            TEXT,
        mac               TEXT,
        vlan              INTEGER,
        state             TEXT NOT NULL CHECK (state IN ('reserved', 'active')),
        boot_id           TEXT NOT NULL,
        reserved_at       REAL,
        activated_at      REAL,
        started_at        REAL,
        network           TEXT,
        port              TEXT,
        saved_pf          TEXT,
        saved_vf_index    INTEGER,
        saved_mac         TEXT,
        saved_vlan        INTEGER,
        saved_qos         INTEGER,
        saved_spoofchk    INTEGER,
        saved_trust       INTEGER,
        saved_link_state  TEXT,
        saved_min_tx_rate INTEGER,
        saved_max_tx_rate INTEGER,
        bridge            TEXT,
        representor       TEXT
    )""",
    """INSERT INTO leases_v4
        SELECT vf, domain_uuid, domain_name, nic_id, mac, vlan, state, boot_id, reserved_at, activated_at,
               started_at, network, port,
               json_extract(saved, '$.pf'), json_extract(saved, '$.vf_index'),
               json_extract(saved, '$.settings.mac'), json_extract(saved, '$.settings.vlan'),
               json_extract(saved, '$.settings.qos'), json_extract(saved, '$.settings.spoofchk'),
               json_extract(saved, '$.settings.trust'), json_extract(saved, '$.settings.link_state'),
               json_extract(saved, '$.settings.min_tx_rate'), json_extract(saved, '$.settings.max_tx_rate'),
               json_extract(saved, '$.bridge'), json_extract(saved, '$.representor')
        FROM leases""",
    "DROP TABLE leases",
    "ALTER TABLE leases_v4 RENAME TO leases",
    "CREATE INDEX leases_domain ON leases (domain_uuid)",
    # what a network nic asks for, in columns too (leases.NetNic; NULL: not asked)
    """CREATE TABLE netnics_v4 (
        domain_uuid TEXT NOT NULL,
        mac         TEXT NOT NULL,
        nic_id      TEXT NOT NULL,
        network     TEXT NOT NULL,
        trust       INTEGER,
        spoofchk    INTEGER,
        link_state  TEXT,
        min_tx_rate INTEGER,
        max_tx_rate INTEGER,
        time        REAL NOT NULL,
        PRIMARY KEY (domain_uuid, mac)
    )""",
    """INSERT INTO netnics_v4
        SELECT domain_uuid, mac, nic_id, network, json_extract(settings, '$.trust'),
               json_extract(settings, '$.spoofchk'), json_extract(settings, '$.link_state'),
               json_extract(settings, '$.min_tx_rate'), json_extract(settings, '$.max_tx_rate'), time
        FROM netnics""",
    "DROP TABLE netnics",
    "ALTER TABLE netnics_v4 RENAME TO netnics",
)
MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3, _V4)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, version: int) -> None:
    """Inside the caller's transaction: apply MIGRATIONS[version:] and record the new version."""
    for step in MIGRATIONS[version:]:
        for statement in step:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
