"""The ledger file's life cycle, and what its SQLite failures mean to a user.

The file is created 0600 in a 0700 directory (it names every domain), under a temporary name linked into
place, so its path never holds a half-made or empty file and two processes creating it at once agree on one;
it is opened in WAL mode with ``synchronous=FULL`` and migrated forward (ledgerschema.py), and a file from a
newer vfplugin is left untouched. Every SQLite failure becomes one LedgerError line that names the file and
what to do (``translate``): a ledger problem is never a silent success.
"""

from __future__ import annotations

import _thread  # built in, unlike threading: no import cost on the hook's path
import os
import sqlite3

from .errors import LedgerCorrupt, LedgerError, LedgerLocked, LedgerTooNew, LedgerUnwritable
from .ledgerschema import SCHEMA_VERSION, migrate

TYPE_CHECKING = False  # typing.TYPE_CHECKING would import typing: the hook avoids it (bench_hook)
if TYPE_CHECKING:
    from _typeshed import StrPath

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
_UMASK_LOCK = _thread.allocate_lock()  # see connect


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


def connect(path: str, timeout: float, create: bool) -> sqlite3.Connection:
    """The ledger at ``path``, open, current and migrated (created first when ``create``); ``create=False``
    and no file raises."""
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
            raise translate(e, path, timeout) from None
        conn.row_factory = sqlite3.Row
        try:
            _prepare(conn, path, timeout)
        except BaseException:
            conn.close()
            raise
    finally:
        os.umask(old_umask)
        _UMASK_LOCK.release()
    return conn


def _prepare(conn: sqlite3.Connection, path: str, timeout: float) -> None:
    try:
        if os.stat(path).st_size == 0:
            # SQLite would take an empty file for a new ledger; vfplugin never leaves one (see _create), so it is
            # damage, and starting afresh could hand out VFs that running domains hold.
            raise LedgerCorrupt(path=path, problem="empty file")
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        version = _version(conn, path)  # before anything writes: a newer file is left untouched
        if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise LedgerCorrupt(path=path, problem="not a vfplugin ledger (foreign tables)")
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        if version < SCHEMA_VERSION:
            conn.execute("BEGIN IMMEDIATE")
            try:
                migrate(conn, _version(conn, path))  # re-read: another process may have migrated
                conn.execute("COMMIT")
            except BaseException:
                rollback(conn)
                raise
    except sqlite3.Error as e:
        raise translate(e, path, timeout) from None
    except OSError as e:
        raise LedgerUnwritable(path=path, problem=f"cannot use it: {e.strerror}",
                               fix="check the file and its directory") from None


def _version(conn: sqlite3.Connection, path: str) -> int:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise LedgerTooNew(path=path, found=version, known=SCHEMA_VERSION)
    return version


def translate(e: sqlite3.Error, path: str, timeout: float) -> LedgerError:
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


def rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the connection is unusable anyway; the caller reports the original error


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
            migrate(conn, 0)
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
        raise translate(e, path, 0) from None
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
