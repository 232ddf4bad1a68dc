"""A throw-away Open vSwitch for the ovs tier: its own ovsdb-server and ovs-vswitchd, started in a temporary
directory and a network namespace of its own, always torn down (daemons killed by pidfile, namespace deleted).

Representors are stood in by veth pairs inside that namespace; ovs-vswitchd runs there too (through
``ip netns exec``) so it can open them, and bridges use the userspace datapath (``datapath_type=netdev``)
so no kernel module is needed. The ovsdb is reached over a unix socket in the temporary directory, which
works from any namespace; ``inside_netns`` moves the test process itself into the namespace so that the
``ip link`` calls vfplugin makes see the veths.

This module reads OVS state with its own ovs-vsctl calls (``get`` with ``--if-exists``), never through
vfplugin.ovs, so the tests check vfplugin against an independent oracle. It must never touch the host's own
Open vSwitch: every daemon gets explicit pidfile/log/unixctl/db paths and OVS_RUNDIR/OVS_LOGDIR/OVS_DBDIR.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
TOOLS = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ip")
CLONE_NEWNET = 0x40000000  # <linux/sched.h>
_serial = itertools.count()


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed")
    return path


def _run(argv: Sequence[str], env: dict[str, str] | None = None, timeout: float = 10.0) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; who reaps it is not our business


def _kill_pidfile(pidfile: Path, wait: float = 5.0) -> None:
    """SIGTERM the daemon named in ``pidfile``, then SIGKILL if it lingers."""
    try:
        pid = int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.02)


class OvsSandbox:
    """One private ovsdb-server + ovs-vswitchd pair; see ``ovs_sandbox`` for its life cycle."""

    def __init__(self, root: Path, netns: str) -> None:
        self.root = root
        self.netns = netns
        self.env = dict(os.environ, OVS_RUNDIR=str(root), OVS_LOGDIR=str(root), OVS_DBDIR=str(root))
        self.peers: dict[str, str] = {}

    @property
    def db(self) -> str:
        """The ovsdb remote, as ovs-vsctl's ``--db`` and vfplugin's ``VFPLUGIN_OVSDB`` take it."""
        return f"unix:{self.root / 'db.sock'}"

    def _pidfile(self, daemon: str) -> Path:
        return self.root / f"{daemon}.pid"

    # --- life cycle -----------------------------------------------------------------------------------------

    def start_ovsdb(self) -> None:
        db = self.root / "conf.db"
        if not db.exists():
            _run([_tool("ovsdb-tool"), "create", str(db), str(SCHEMA)], self.env)
        _run(
            [
                _tool("ovsdb-server"), str(db), f"--remote=punix:{self.root / 'db.sock'}",
                f"--pidfile={self._pidfile('ovsdb-server')}", f"--log-file={self.root / 'ovsdb-server.log'}",
                f"--unixctl={self.root / 'ovsdb-server.ctl'}", "--detach", "--no-chdir",
            ],
            self.env,
        )
        self.vsctl("--no-wait", "init")

    def start_vswitchd(self) -> None:
        # Inside the namespace, so that it sees (and can open) the veths standing in for representors.
        _run(
            [
                _tool("ip"), "netns", "exec", self.netns, _tool("ovs-vswitchd"), self.db,
                f"--pidfile={self._pidfile('ovs-vswitchd')}", f"--log-file={self.root / 'ovs-vswitchd.log'}",
                f"--unixctl={self.root / 'ovs-vswitchd.ctl'}", "--detach", "--no-chdir",
            ],
            self.env,
        )

    def stop_ovsdb(self) -> None:
        _kill_pidfile(self._pidfile("ovsdb-server"))

    def stop_vswitchd(self) -> None:
        _kill_pidfile(self._pidfile("ovs-vswitchd"))

    def log_tail(self, lines: int = 20) -> str:
        out = []
        for name in ("ovsdb-server.log", "ovs-vswitchd.log"):
            path = self.root / name
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {name}\n" + "\n".join(tail))
        return "\n".join(out)

    # --- set-up helpers -------------------------------------------------------------------------------------

    def vsctl(self, *args: str, timeout: int = 5) -> str:
        return _run([_tool("ovs-vsctl"), f"--db={self.db}", f"--timeout={timeout}", *args], self.env).strip()

    def add_bridge(self, name: str) -> None:
        self.vsctl("add-br", name, "--", "set", "Bridge", name, "datapath_type=netdev")

    def add_representor(self, name: str) -> None:
        """A veth pair in the namespace: ``name`` plays the representor, its peer the VF in the guest."""
        peer = f"vfp{len(self.peers)}peer"
        _run([_tool("ip"), "-n", self.netns, "link", "add", name, "type", "veth", "peer", "name", peer])
        self.peers[name] = peer

    # --- the oracle: what OVS and the kernel say, read without vfplugin -------------------------------------

    def get(self, table: str, record: str, column: str) -> str | None:
        """One column (or ``column:key``) of one record, decoded; None when the key or record is absent."""
        out = self.vsctl("--if-exists", "get", table, record, column)
        if out in ("", "[]"):
            return None
        return str(json.loads(out)) if out.startswith('"') else out

    def external_ids(self, interface: str) -> dict[str, str | None]:
        keys = ("vm-uuid", "iface-id", "attached-mac", "vfplugin")
        return {k: self.get("Interface", interface, f"external_ids:{k}") for k in keys}

    def ports(self, bridge: str) -> list[str]:
        return sorted(self.vsctl("list-ports", bridge).split())

    def bridge_of(self, port: str) -> str | None:
        try:
            return self.vsctl("port-to-br", port)
        except RuntimeError:
            return None

    def link_is_up(self, name: str) -> bool:
        info = json.loads(_run([_tool("ip"), "-n", self.netns, "-j", "link", "show", "dev", name]))
        return "UP" in info[0]["flags"]


@contextmanager
def ovs_sandbox(representors: Sequence[str] = ()) -> Iterator[OvsSandbox]:
    """A running private OVS with a veth pair for each name in ``representors``; always cleaned up."""
    root = Path(tempfile.mkdtemp(prefix="vfp-ovs-"))  # short: unix socket paths are limited to 107 bytes
    netns = f"vfp-ovs-{os.getpid()}-{next(_serial)}"
    sandbox = OvsSandbox(root, netns)
    try:
        _run([_tool("ip"), "netns", "add", netns])
        _run([_tool("ip"), "-n", netns, "link", "set", "lo", "up"])
        for name in representors:
            sandbox.add_representor(name)
        sandbox.start_ovsdb()
        sandbox.start_vswitchd()
        yield sandbox
    finally:
        sandbox.stop_vswitchd()
        sandbox.stop_ovsdb()
        subprocess.run([_tool("ip"), "netns", "del", netns], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def inside_netns(name: str) -> Iterator[None]:
    """Run the calling thread (and the processes it starts) in network namespace ``name``, then come back.

    Python 3.11 has no os.setns, so this calls setns(2) through libc; it affects only the calling thread,
    which is the one pytest runs the test in.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/thread-self/ns/net", "rb") as home, open(f"/run/netns/{name}", "rb") as target:
        if libc.setns(target.fileno(), CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {name}: {os.strerror(err)}")
        try:
            yield
        finally:
            if libc.setns(home.fileno(), CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back home: {os.strerror(err)}")
