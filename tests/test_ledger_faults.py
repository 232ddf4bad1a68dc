"""A ledger process killed at every step of claim, reserve, release and expire; damaged, locked, read-only and
full ledger files. The kills go through the real code path: the child sets VFPLUGIN_FAULT=<point> and
SIGKILLs itself there (vfplugin.ledger.FAULT_POINTS lists every point; each must be reached)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import require, require_root, require_tool

from vfplugin.errors import LedgerCorrupt, LedgerLocked, LedgerUnwritable
from vfplugin.ledger import FAULT_POINTS, Ledger, Want

pytestmark = pytest.mark.sqlite

VF1, VF2, VF3 = "0000:0a:10.0", "0000:0a:10.1", "0000:0a:10.2"

CHILD = """
import sys
from vfplugin.ledger import Ledger, Want
path, op = sys.argv[1:]
with Ledger.open(path, boot_id="boot-2") as ledger:
    if op in ("claim", "reserve"):
        getattr(ledger, op)("u-web", "web1", [Want("VF1", "net0"), Want("VF2", "net1")])
    elif op == "release":
        ledger.release("u-web", domain_name="web1")
    else:
        ledger.expire()
""".replace("VF1", VF1).replace("VF2", VF2)


def run_child(path: Path, op: str, fault: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, VFPLUGIN_FAULT=fault)
    return subprocess.run([sys.executable, "-c", CHILD, str(path), op], env=env, capture_output=True,
                          text=True, timeout=60)


def prepare(path: Path, op: str) -> None:
    """Before this boot, domain old1 held VF1 and VF3 (stale now: claim takes VF1 over, expire drops both).
    For release, web1 holds VF1 and VF2 in this boot."""
    with Ledger.open(path, boot_id="boot-1") as before:
        before.claim("u-old", "old1", [Want(VF1, "net0"), Want(VF3, "net1")])
    if op == "release":
        with Ledger.open(path, boot_id="boot-2") as now:
            now.claim("u-web", "web1", [Want(VF1, "net0"), Want(VF2, "net1")])


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_a_process_killed_at_any_step_leaves_a_sound_ledger_and_no_leaked_lease(tmp_path, point):
    path = tmp_path / "ledger.sqlite3"
    op = point.split(":")[0]
    prepare(path, op)
    child = run_child(path, op, point)
    assert child.returncode == -signal.SIGKILL, f"fault point {point} not reached: {child.stderr}"

    with Ledger.open(path, boot_id="boot-2", timeout=2) as after:
        assert after.integrity() == []
        web = {x.vf for x in after.leases() if x.domain_uuid == "u-web"}
        events = [(e.action, e.vf) for e in after.history(domain="u-web") if e.outcome == "ok"]
        claimed = {vf for action, vf in events if action in ("claim", "reserve")}
        released = {vf for action, vf in events if action == "release"}
        # all or nothing, and the journal agrees with the leases
        assert web in (set(), {VF1, VF2})
        assert web == claimed - released
        # what `vfctl reconcile` does on the ledger side, then the owner's release: nothing leaks
        after.expire()
        after.release("u-web", domain_name="web1")
        assert after.leases() == []
        # and the lock died with the child: another domain can claim at once
        assert after.claim("u-db", "db1", [Want(VF1, "net0")])[0].state == "active"


# --- damaged files -------------------------------------------------------------------------------------


def one_line(error: Exception) -> str:
    text = str(error)
    assert "\n" not in text
    return text


def test_a_file_that_is_not_a_database_gives_one_line_with_the_fix(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(b"this is not SQLite at all\n" * 400)
    with pytest.raises(LedgerCorrupt) as e:
        Ledger.open(path, boot_id="b")
    assert one_line(e.value) == (
        f"ledger {path}: corrupt (file is not a database); move it aside (mv {path} {path}.bad) and run "
        "'vfctl reconcile' to rebuild it from running domains"
    )


def test_an_empty_file_is_damage_not_a_new_ledger(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    path.touch(mode=0o600)
    with pytest.raises(LedgerCorrupt, match="corrupt \\(empty file\\)"):
        Ledger.open(path, boot_id="b")


def test_a_truncated_file_gives_one_line_never_a_lease(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    from vf_values import pf_vfs

    with Ledger.open(path, boot_id="b") as ledger:
        ledger.record_vfs(pf_vfs("eth2", 200))
        for i in range(50):
            ledger.claim(f"u{i}", f"vm{i}", [Want(f"0000:0b:00.{i % 8}-{i}", "net0")])
        ledger._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = path.stat().st_size
    assert size > 8 * 4096
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(LedgerCorrupt) as e:
        with Ledger.open(path, boot_id="b") as ledger:
            ledger.leases()
            ledger.history()
            ledger.claim("u-new", "new1", [Want(VF1, "net0")])
    assert "move it aside" in one_line(e.value)


def test_a_file_truncated_inside_its_header(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    Ledger.open(path, boot_id="b").close()
    with open(path, "r+b") as f:
        f.truncate(50)
    with pytest.raises(LedgerCorrupt):
        with Ledger.open(path, boot_id="b") as ledger:
            ledger.leases()


def test_another_programs_database_is_not_taken_for_a_ledger(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE photos (id)")
    db.commit()
    db.close()
    with pytest.raises(LedgerCorrupt, match="not a vfplugin ledger"):
        Ledger.open(path, boot_id="b")


# --- locks, permissions, space ---------------------------------------------------------------------------


def test_a_ledger_locked_beyond_the_timeout_says_who_to_look_for(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    Ledger.open(path, boot_id="b").close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with Ledger.open(path, boot_id="b", timeout=0.2) as ledger:
            with pytest.raises(LedgerLocked) as e:
                ledger.claim("u-web", "web1", [Want(VF1, "net0")])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert one_line(e.value) == (
        f"ledger {path}: locked by another process for more than 0.2 s; "
        f"retry, or find the process holding it with 'fuser {path}'"
    )
    with Ledger.open(path, boot_id="b") as ledger:
        assert ledger.leases() == []


AS_NOBODY = """
import os, sys
os.setgid(65534); os.setuid(65534)
from vfplugin.errors import VfpluginError
from vfplugin.ledger import Ledger, Want
try:
    with Ledger.open(sys.argv[1], boot_id="b") as ledger:
        ledger.claim("u-web", "web1", [Want("0000:0a:10.0", "net0")])
except VfpluginError as e:
    print(type(e).__name__, e)
    sys.exit(1)
print("claimed")
"""


def as_nobody(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", AS_NOBODY, str(path)], capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def public_dir():  # type: ignore[no-untyped-def]
    """A root-owned 0755 directory that nobody can reach (pytest's tmp_path sits under a 0700 directory)."""
    require_root()
    directory = Path(tempfile.mkdtemp(prefix="vfplugin-ledger-", dir="/tmp"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def test_a_read_only_ledger_refuses_the_claim_in_one_line(public_dir):
    path = public_dir / "ledger.sqlite3"
    Ledger.open(path, boot_id="b").close()
    path.chmod(0o644)  # readable, not writable, by nobody (vfplugin would close it again; open it by hand)
    public_dir.chmod(0o777)  # WAL readers need to create the -shm file next to it
    child = as_nobody(path)
    public_dir.chmod(0o755)
    assert child.returncode == 1, child.stdout + child.stderr
    assert child.stdout.startswith(f"LedgerUnwritable ledger {path}: read-only"), child.stdout
    assert child.stdout.count("\n") == 1


def test_an_unwritable_directory_gives_one_line(public_dir):
    path = public_dir / "sub" / "ledger.sqlite3"
    child = as_nobody(path)
    assert child.returncode == 1
    assert child.stdout == (
        f"LedgerUnwritable ledger {path}: cannot create directory {path.parent}: Permission denied; "
        f"create it with 'install -d -m 0700 {path.parent}' as root\n"
    )
    (public_dir / "sub").mkdir(mode=0o755)
    child = as_nobody(path)
    assert child.returncode == 1
    assert child.stdout == (
        f"LedgerUnwritable ledger {path}: cannot be opened; check that {path.parent} exists and is writable "
        "for this user\n"
    )


def test_a_ledger_this_user_may_not_look_at_is_not_taken_for_a_missing_one(public_dir):
    private = public_dir / "private"
    private.mkdir(mode=0o700)
    path = private / "ledger.sqlite3"
    Ledger.open(path, boot_id="b").close()
    child = as_nobody(path)
    assert child.returncode == 1
    assert child.stdout == (
        f"LedgerUnwritable ledger {path}: cannot look at it: Permission denied; "
        "run as root (the ledger is private to root)\n"
    )


@pytest.fixture
def small_fs(tmp_path):  # type: ignore[no-untyped-def]
    require_root()
    mount = tmp_path / "small"
    mount.mkdir()
    require_tool("mount", "umount")
    argv = [shutil.which("mount") or "mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(mount)]
    done = subprocess.run(argv, capture_output=True, text=True)
    require(done.returncode == 0, f"cannot mount a small tmpfs: {done.stderr.strip()}")
    yield mount
    subprocess.run([shutil.which("umount") or "umount", str(mount)], check=True)


FULL = "the disk is full; free space on the file system holding"


def fill(directory: Path) -> None:
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:  # take every free byte
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def test_a_disk_filling_up_under_an_open_ledger_refuses_the_claim_in_one_line(small_fs):
    path = small_fs / "ledger.sqlite3"
    with Ledger.open(path, boot_id="b") as ledger:
        ledger.leases()  # the -wal and -shm files exist now
        fill(small_fs)
        with pytest.raises(LedgerUnwritable) as e:
            for i in range(1000):
                ledger.claim(f"u{i}", f"vm{i}", [Want(f"0000:0a:{i // 8:02x}.{i % 8}", "net0")])
        assert one_line(e.value) == f"ledger {path}: {FULL} {small_fs}"
        committed = len(ledger.leases())
    (small_fs / "filler").unlink()
    with Ledger.open(path, boot_id="b") as ledger:
        assert ledger.integrity() == []
        assert len(ledger.leases()) == committed  # the refused claim left nothing behind


def test_a_full_disk_at_open_gives_one_line(small_fs):
    path = small_fs / "ledger.sqlite3"
    Ledger.open(path, boot_id="b").close()
    fill(small_fs)
    with pytest.raises(LedgerUnwritable) as e:
        with Ledger.open(path, boot_id="b") as ledger:
            ledger.claim("u-web", "web1", [Want(VF1, "net0")])
    assert one_line(e.value) == f"ledger {path}: {FULL} {small_fs}"


def test_vfctl_list_as_a_user_who_cannot_see_the_ledger_says_so_instead_of_all_free(public_dir):
    from tests.hosts import host_root

    private = public_dir / "private"
    private.mkdir(mode=0o700)  # as /var/lib/vfplugin is
    path = private / "ledger.sqlite3"
    Ledger.open(path, boot_id="b").close()
    config = public_dir / "vfplugin.yaml"
    config.write_text(f"sriov_nics: [eth2]\nsysfs_root: {host_root('example')}\nledger: {path}\n")
    config.chmod(0o644)
    code = ("import os, sys; os.setgid(65534); os.setuid(65534); from vfplugin.cli import main; "
            f"sys.exit(main(['--config', {str(config)!r}, 'list', '--json']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith(f"vfctl: ledger {path}: cannot look at it"), done.stderr
    assert done.stderr.count("\n") == 1
