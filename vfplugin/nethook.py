"""The libvirt network hook: ``<network> <op> <sub-op> -`` + ``<hookData>`` on stdin -> an action.

Facts that shape it (DESIGN.md section 1): libvirt runs it for every network event of every network;
``port-created`` comes after the qemu hook's ``prepare begin`` and a non-zero exit fails the domain's start
(``port-deleted`` then follows); the hook must never call libvirt (the network object is locked).

For a *guarded* network (netdef.guarded: a hostdev network over VFs of managed PFs, whoever defined it):
- ``port-created``: claim the port's VF for the owner domain in the ledger (atomic, like the qemu hook); a VF
  another domain holds refuses the start with one line naming the VF, the holder and the fix. Then apply the
  settings the domain's ``<vfp:nic network=...>`` asked for (recorded by the qemu hook at ``prepare begin``,
  keyed by domain UUID and MAC) and plug the OVS representor, with configure.py's rollback. A port vfplugin
  made itself for a VF it already leases to that domain (netports.py's reclaim ports) changes nothing.
- ``port-deleted``: put the settings back, unplug, free only that owner's lease taken through this network;
  idempotent.
- ``started``: libvirt starts a network with every port count at 0 while domains may hold its VFs; ask for
  the repair (netports.sync through ``vfctl network sync``) to run once this hook has returned.
Every other network (bridges, NAT, hostdev networks over unmanaged PFs) exits 0 at once: stdin without
``hostdev`` before anything is imported, others before the ledger is opened (it is never created here).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing alone costs a tenth of the fast path
if TYPE_CHECKING:
    from typing import IO

    from .addresses import PciAddress
    from .config import Config
    from .netdef import NetworkFacts, PortFacts
    from .sysfs import Sysfs

# What a hookData that may concern vfplugin contains: a hostdev network's <forward mode='hostdev'>. A
# character reference or an encoding declaration could hide the word from a byte search: those are parsed.
MARKS = (b"hostdev", b"&#", b"encoding")
OPERATIONS = {"port-created", "port-deleted", "started"}
REPAIR_UNIT = "vfplugin-netports.service"
IPROUTE2 = "iproute2"  # VF settings through ip, not pyroute2 (250-290 ms to import): see netlink.py


def script(python: str = "/usr/bin/python3") -> str:
    """The executable installed as /etc/libvirt/hooks/network.d/vfplugin (hooks/network is this for
    /usr/bin/python3)."""
    return (
        f"#!{python} -I\n"
        '"""vfplugin\'s libvirt network hook, installed as /etc/libvirt/hooks/network.d/vfplugin."""\n'
        "import sys\n\n"
        "from vfplugin.nethook import main\n\n"
        "sys.exit(main(fast_exit=True))\n"
    )


def may_concern_vfplugin(data: bytes) -> bool:
    """Cheap pre-check (a byte search, no parsing): could this be a hostdev network at all?"""
    return any(mark in data for mark in MARKS)


def main(
    argv: list[str] | None = None,
    stdin: IO[bytes] | None = None,
    stderr: IO[str] | None = None,
    fast_exit: bool = False,
) -> int:
    """Run the hook for ``argv`` (default: the process's); the exit code libvirt gets. ``fast_exit``: as the
    qemu hook, end the process with ``os._exit`` once stderr is flushed."""
    code = _main(argv, stdin, stderr)
    if fast_exit:
        import os

        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    return code


def _main(argv: list[str] | None, stdin: IO[bytes] | None, stderr: IO[str] | None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[1] not in OPERATIONS:
        return 0
    name, op = args[0], args[1]
    data = (stdin or sys.stdin.buffer).read()
    if not may_concern_vfplugin(data):
        return 0
    return _run(name, op, data, stderr or sys.stderr)


class _Context:
    def __init__(self, name: str, op: str, network: NetworkFacts, port: PortFacts | None, config: Config,
                 sysfs: Sysfs) -> None:
        self.name, self.op, self.network, self.port = name, op, network, port
        self.config, self.sysfs = config, sysfs


def _run(name: str, op: str, data: bytes, err: IO[str]) -> int:
    from .errors import VfpluginError
    from .log import LOG, setup

    setup("vfplugin-hook", operation=f"network={name} op={op}")
    can_refuse = op == "port-created"
    try:
        ctx = _context(name, op, data)
        if ctx is None:
            return 0  # not guarded
        return _HANDLERS[op](ctx)
    except VfpluginError as e:
        LOG.error("%s", e)
        if can_refuse:
            print(f"vfplugin: {e}", file=err)
            return 1
        return 0
    except Exception as e:  # a bug: the traceback goes to the log, never to the user's terminal
        LOG.exception("internal error")
        if can_refuse:
            print(f"vfplugin: internal error: {type(e).__name__}: {e} (traceback in the system log)", file=err)
            return 1
        return 0


def _context(name: str, op: str, data: bytes) -> _Context | None:
    """The facts of a guarded network's event, or None when vfplugin does not guard the network."""
    from .config import load
    from .errors import RequestError
    from .netdef import guarded, read
    from .sysfs import Sysfs

    config = load()
    if not config.managed_pfs:
        return None
    network, port = read(data, f"network {name} hook data")
    if network is None:
        raise RequestError(source=f"network {name} hook data", problem="no <network> element")
    if not network.hostdev:
        return None
    sysfs = Sysfs(config.sysfs_root)
    if not guarded(network, config, sysfs.locate):
        return None
    return _Context(name, op, network, port, config, sysfs)


def _port_vf(ctx: _Context) -> tuple[PortFacts, str, int]:
    """The port, and the PF and VF index of its VF, which must lie in the network's pool."""
    from .errors import RequestError
    from .netdef import in_pool

    source = f"network {ctx.name} port"
    port = ctx.port
    if port is None:
        raise RequestError(source=source, problem="no <networkport> in the hook data")
    if port.plug != "hostdev-pci" or port.address is None:
        raise RequestError(source=source, problem=f"plug type {port.plug!r} is not hostdev-pci with an <address>")
    if not port.owner_uuid:
        raise RequestError(source=source, problem="the port has no <owner><uuid>")
    where = in_pool(ctx.network, port.address, ctx.sysfs.locate)
    if where is None:
        raise RequestError(source=source, problem=f"VF {port.address} is not in the network's pool")
    return port, where[0], where[1]


def _pool_settings(ctx: _Context, address: PciAddress, pf: str) -> tuple[tuple[str, object], ...]:
    """The ``settings`` of the first configured pool that has some and admits the VF, else ()."""
    pools = [p for p in ctx.config.pools if p.settings and (not p.pfs or pf in p.pfs)]
    if not pools:
        return ()
    model = None
    if any(p.model is not None for p in pools):  # pci.ids only when a pool with settings names a model
        from .pciids import PciIds

        found = ctx.sysfs.vf(address)
        model = PciIds().model(found.vendor_id, found.device_id) if found is not None else None
    return next((p.settings for p in pools if p.admits(pf, model or "")), ())


# --- the actions -----------------------------------------------------------------------------------------


def port_created(ctx: _Context) -> int:
    """Claim the port's VF for its owner, apply the nic's settings, plug; all or nothing."""
    from .configure import configure, unconfigure
    from .errors import NetworkVfBusy, VfBusy, VfpluginError
    from .leases import Want
    from .ledger import Ledger
    from .log import LOG
    from .plan import Holding
    from .request import NicRequest

    port, pf, vf_index = _port_vf(ctx)
    assert port.address is not None and port.owner_uuid is not None
    vf = str(port.address)
    owner = port.owner_name or port.owner_uuid
    with Ledger.open(ctx.config.ledger, ttl=ctx.config.reservation_ttl) as ledger:
        held = ledger.lease(vf)
        if held is not None and held.domain_uuid == port.owner_uuid and not held.stale and (
            held.network is None or held.network == ctx.name
        ):
            # vfplugin's own reclaim port for a lease it holds, or libvirt re-creating a port it had: no change
            return 0
        wanted = ledger.netnic(port.owner_uuid, port.mac) if port.mac else None
        nic_id = wanted.nic_id if wanted is not None else None
        try:
            ledger.claim(port.owner_uuid, owner, [Want(vf, nic_id, port.mac, network=ctx.name, port=port.uuid)])
        except VfBusy as e:
            raise NetworkVfBusy(vf=vf, holder=e.kwargs["holder"], network=ctx.name) from None
        nic = None
        if wanted is not None:
            nic = NicRequest(wanted.nic_id, "network", wanted.network, **wanted.settings)
        defaults = _pool_settings(ctx, port.address, pf)
        if defaults:
            from .request import with_defaults

            # a port of a domain that asked nothing (any libvirt client) still gets its pool's settings;
            # the id only names the OVS iface-id, which is "<domain>-<VF>" for such a port anyway
            nic = with_defaults(nic or NicRequest(vf, "network", ctx.name), defaults)
        holding = Holding(port.address, pf, vf_index, nic, "interface", port.mac, None)
        try:
            configure(ctx.config, ctx.sysfs, ledger, port.owner_uuid, owner, holding, via=IPROUTE2)
        except VfpluginError as e:
            lease = ledger.lease(vf)
            if lease is not None:
                for problem in unconfigure(ctx.config, ctx.sysfs, lease, pf, via=IPROUTE2):
                    LOG.warning("rollback: %s", problem)
            ledger.release(port.owner_uuid, vfs=[vf], network=ctx.name, reason=f"start refused: {e}")
            raise
    return 0


def port_deleted(ctx: _Context) -> int:
    """Put the VF's settings back, unplug, free the owner's lease taken through this network; idempotent."""
    from .configure import unconfigure
    from .ledger import Ledger, exists
    from .log import LOG

    port = ctx.port
    if port is None or port.address is None or not port.owner_uuid or not exists(ctx.config.ledger):
        return 0
    vf = str(port.address)
    with Ledger.open(ctx.config.ledger, ttl=ctx.config.reservation_ttl) as ledger:
        lease = ledger.lease(vf)
        if lease is None or lease.domain_uuid != port.owner_uuid or lease.network != ctx.name:
            return 0  # a reclaim port of a lease vfctl holds, or nothing held: nothing to give back
        for problem in unconfigure(ctx.config, ctx.sysfs, lease, None, via=IPROUTE2):
            LOG.warning("port-deleted: %s", problem)
            ledger.journal("restore", "failed", domain_uuid=lease.domain_uuid, domain_name=lease.domain_name,
                           vf=vf, detail=problem, network=ctx.name)
        ledger.release(port.owner_uuid, vfs=[vf], network=ctx.name, reason="port deleted",
                       domain_name=lease.domain_name)
    return 0


def started(ctx: _Context) -> int:
    """A guarded network (re)started with no port counted: have the ports repaired once libvirt is free."""
    request_repair(ctx.name)
    return 0


def request_repair(network: str) -> None:
    """Start ``vfctl network sync`` so that it runs after this hook returns (it calls libvirt, which the hook
    may not): the systemd unit when systemd runs, else a detached process of its own."""
    import os
    import subprocess

    from .log import LOG

    if os.path.isdir("/run/systemd/system"):
        argv = ["systemctl", "--no-block", "start", REPAIR_UNIT]
        try:
            subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            LOG.warning("network %s: cannot start %s: %s", network, REPAIR_UNIT, e)
        return
    # No systemd: a new session, no terminal, no pipe of libvirt's held open (libvirt waits for the hook's
    # stdout/stderr to close). It waits for the network's lock inside libvirt, which the hook's return frees.
    try:
        subprocess.Popen(
            [sys.executable, "-I", "-m", "vfplugin.cli", "network", "sync"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True, cwd="/",
        )
    except OSError as e:
        LOG.warning("network %s: cannot start vfctl network sync: %s", network, e)


_HANDLERS = {"port-created": port_created, "port-deleted": port_deleted, "started": started}
