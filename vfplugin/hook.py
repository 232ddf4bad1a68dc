"""The libvirt qemu hook: ``<domain> <operation> <sub-operation> <extra>`` + domain XML on stdin -> an action.

Facts that shape it (DESIGN.md section 1): only ``migrate begin`` and ``restore begin`` may rewrite the XML
(stdout); ``prepare begin`` and ``start begin`` can refuse a start (exit 1, stderr reaches the user through
virsh); ``stopped end``/``release end`` run after every start attempt, even one refused at prepare, so
they are idempotent and touch only this domain's leases; a failing ``reconnect begin`` kills the VM, so it
always exits 0.
The hook never calls libvirt (the domain is locked) and reads only stdin and local state.

Speed: the hook runs on every lifecycle event of every domain on the host. Module level imports only the
standard library's already-loaded ``sys``/``os``; a domain whose XML has neither vfplugin's namespace nor a
hostdev is let through before anything else is imported. A vfplugin failure blocks only a domain that is
vfplugin's (it carries the request namespace, or a hostdev on a managed PF); any other domain passes.
"""

from __future__ import annotations

import sys
import time  # built into the interpreter and loaded at its start: no import cost (the journal's durations)

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing alone costs a tenth of the fast path
if TYPE_CHECKING:
    from typing import IO, Callable

    from .config import Config
    from .domread import DomainFacts
    from .domxml import Domain
    from .leases import Lease
    from .ledger import Ledger
    from .plan import Holding
    from .sysfs import Sysfs

REQUEST_MARK = b"urn:vfplugin:1"
HOSTDEV_MARK = b"hostdev"  # <hostdev ...> and <interface type='hostdev'>
CAN_REFUSE = {"prepare", "start", "migrate", "restore"}
# VF settings through iproute2's ip, one exec per event: pyroute2 costs a fresh hook process 250-290 ms (netlink.py)
RTNETLINK = "iproute2"


def script(python: str = "/usr/bin/python3") -> str:
    """The executable installed as /etc/libvirt/hooks/qemu.d/vfplugin (hooks/qemu: this for /usr/bin/python3).

    ``-I``: the hook runs as root; ignore PYTHON* variables, the user site and the current directory.
    """
    return (
        f"#!{python} -I\n"
        '"""vfplugin\'s libvirt qemu hook, installed as /etc/libvirt/hooks/qemu.d/vfplugin."""\n'
        "import sys\n\n"
        "from vfplugin.hook import main\n\n"
        "sys.exit(main(fast_exit=True))\n"
    )


# Bytes that send a document to the parser although neither mark is in it literally: a character reference
# can spell the namespace or a hostdev (``urn:vfplugin&#58;1``), and a declared encoding other than UTF-8 can
# hide both from a byte search. hooks/front applies the same rule in /bin/sh (tests/test_front.py).
PARSER_MARKS = (b"&#", b"encoding")


def concerns_vfplugin(xml: bytes) -> bool:
    """Cheap pre-check: could this domain be vfplugin's at all? (No parsing: a byte search.)

    Never False for a document a parser reads as vfplugin's; the shell front (hooks/front) lets an event
    through to Python by exactly this rule."""
    return REQUEST_MARK in xml or HOSTDEV_MARK in xml or PARSER_MARKS[0] in xml or PARSER_MARKS[1] in xml


def main(
    argv: list[str] | None = None,
    stdin: IO[bytes] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    fast_exit: bool = False,
) -> int:
    """Run the hook for ``argv`` (default: the process's); the exit code libvirt gets.

    ``fast_exit`` (the installed hook): end the process here with ``os._exit`` once stdout and stderr are
    flushed. Tearing the interpreter down (freeing every module and object) costs a hook run 2-3 ms that
    nobody needs; the ledger is closed by then, and nothing vfplugin does waits for interpreter exit.
    """
    code = _main(argv, stdin, stdout, stderr, time.monotonic())
    if fast_exit:
        import os

        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # libvirt closed the pipe: nothing left to tell it
                pass
        os._exit(code)
    return code


def _main(
    argv: list[str] | None, stdin: IO[bytes] | None, stdout: IO[str] | None, stderr: IO[str] | None,
    started: float | None = None,
) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3:
        return 0
    name, operation, sub = args[0], args[1], args[2]
    handler = _HANDLERS.get((operation, sub))
    if handler is None:
        return 0
    xml = (stdin or sys.stdin.buffer).read()
    if not concerns_vfplugin(xml):
        return 0
    return _run(handler, name, operation, sub, xml, stdout or sys.stdout, stderr or sys.stderr, started)


class _Context:
    """What one hook invocation knows: the domain, the configuration, and lazily what the XML says, the ledger
    and sysfs. Operations that only look the domain up in the ledger (started, stopped, release) never parse
    the XML: releasing must not depend on it. Reading uses expat (domread); only migrate/restore, which
    rewrite the XML, load lxml (domxml)."""

    def __init__(self, name: str, xml: bytes, out: IO[str]) -> None:
        from .config import load

        self.name = name
        self.xml = xml
        self.out = out
        self.ours = REQUEST_MARK in xml  # decided before anything can fail; refined by facts and holdings()
        self._uuid: str | None = None
        self.unreadable = False  # the XML is unusable before its <uuid>: the ledger knows the domain by name
        self._facts: DomainFacts | None = None
        self._sysfs: Sysfs | None = None
        self.config: Config = load()
        self.started: float | None = None  # time.monotonic() at the hook's start: its journal entries' durations

    @property
    def facts(self) -> DomainFacts:
        if self._facts is None:
            from .domread import read_domain

            self._facts = read_domain(self.xml, source=f"domain {self.name}")
            self._uuid = self._facts.uuid or self.name
            if self._facts.requests:  # a request the byte search missed (urn:vfplugin&#58;1) is vfplugin's too
                self.ours = True
        return self._facts

    @property
    def uuid(self) -> str:
        """The name the ledger knows the domain by, the same for every operation: its parsed, canonical
        <uuid> (the domain's name if it has none). Operations that never need the facts read the XML only up
        to its <uuid> (domread.read_uuid), so a release still gives back from an XML broken after it."""
        if self._uuid is None:
            if self._facts is not None:
                self._uuid = self._facts.uuid or self.name
            else:
                from .domread import read_uuid
                from .errors import VfpluginError

                try:
                    self._uuid = read_uuid(self.xml, source=f"domain {self.name}") or self.name
                except VfpluginError:
                    self.unreadable = True
                    self._uuid = self.name
        return self._uuid

    def domain(self) -> Domain:
        """The XML as an editable tree, for the operations whose output replaces it."""
        from .domxml import parse_domain

        return parse_domain(self.xml, source=f"domain {self.name}")

    @property
    def sysfs(self) -> Sysfs:
        if self._sysfs is None:
            from .sysfs import Sysfs

            self._sysfs = Sysfs(self.config.sysfs_root)
        return self._sysfs

    def holdings(self) -> list[Holding]:
        from .errors import RequestError
        from .plan import duplicates, holdings

        held = holdings(self.facts, self.config, self.sysfs.locate)
        if held:
            self.ours = True
        twice = duplicates(held)
        if twice:
            raise RequestError(source=f"domain {self.name}", problem=f"VF {twice} is listed twice")
        return held

    def ledger(self) -> Ledger:
        from .ledger import Ledger

        ledger = Ledger.open(self.config.ledger, ttl=self.config.reservation_ttl)
        ledger.started = self.started  # every entry this event journals records its duration (metrics' histogram)
        return ledger

    def existing_ledger(self) -> Ledger | None:
        """The ledger if there is one: no ledger means nothing was ever held, so nothing to give back."""
        from .ledger import exists

        return self.ledger() if exists(self.config.ledger) else None

    def my_leases(self, ledger: Ledger) -> list[Lease]:
        uuid = self.uuid
        if self.unreadable:  # no <uuid> to go by: the leases held under this domain's name (names are unique)
            return [x for x in ledger.leases() if x.domain_uuid == uuid or x.domain_name == self.name]
        return [lease for lease in ledger.leases() if lease.domain_uuid == uuid]


def _run(
    handler: Callable[[_Context], int],
    name: str,
    operation: str,
    sub: str,
    xml: bytes,
    out: IO[str],
    err: IO[str],
    started: float | None = None,
) -> int:
    from .errors import VfpluginError
    from .log import LOG, setup

    setup("vfplugin-hook", domain=name, operation=f"{operation}/{sub}")
    ctx: _Context | None = None

    def refuse(line: str) -> int:
        # Only a domain that is vfplugin's may be stopped by vfplugin, and only where libvirt lets a hook refuse.
        # Before the context exists, "ours" is the cheap guess the context would start from.
        ours = ctx.ours if ctx is not None else REQUEST_MARK in xml
        if operation in CAN_REFUSE and ours:
            print(f"vfplugin: {line}", file=err)
            return 1
        return 0

    try:
        ctx = _Context(name, xml, out)
        ctx.started = started
        return handler(ctx)
    except VfpluginError as e:
        LOG.error("%s", e)
        return refuse(_without_agent(e, ctx) or str(e))
    except Exception as e:  # a bug: the traceback goes to the log, never to the user's terminal
        LOG.exception("internal error")
        return refuse(f"internal error: {type(e).__name__}: {e} (traceback in the system log)")


def _without_agent(e: Exception, ctx: _Context | None) -> str | None:
    """The refusal of a start vfplugind would have made startable (no VF chosen yet, or a VF another domain
    took), when that agent is not running: say so. Only on the refusal path: the check opens a file."""
    from .errors import AGENT_DOWN_HINT, NoVfChosen, VfBusy

    if ctx is None or not isinstance(e, (NoVfChosen, VfBusy)):
        return None
    from . import agentpid

    if agentpid.running(ctx.config.ledger):
        return None
    return e.with_hint(AGENT_DOWN_HINT.format(domain=ctx.name))


# --- the actions -----------------------------------------------------------------------------------------


def prepare(ctx: _Context) -> int:
    """Claim every VF the domain holds (all or none), apply what libvirt does not, plug representors."""
    from .configure import configure, unconfigure
    from .errors import VfpluginError
    from .log import LOG

    held = ctx.holdings()
    record_network_nics(ctx)
    if not held:
        return 0
    with ctx.ledger() as ledger:
        ledger.claim(ctx.uuid, ctx.name, [h.want() for h in held])
        try:
            for h in held:
                configure(ctx.config, ctx.sysfs, ledger, ctx.uuid, ctx.name, h, via=RTNETLINK)
        except VfpluginError as e:
            # Nothing half-configured: undo what was done, free the claim, then refuse the start.
            for lease in ctx.my_leases(ledger):
                for problem in unconfigure(ctx.config, ctx.sysfs, lease, None, via=RTNETLINK):
                    LOG.warning("rollback: %s", problem)
            ledger.release(ctx.uuid, reason=f"start refused: {e}")
            raise  # the claim itself is journaled, in its own transaction: no second write (fsync) here
    return 0


def record_network_nics(ctx: _Context) -> None:
    """``network=`` nics: libvirt's network picks their VF after this event; the network hook's port-created
    sees only the port's MAC, so record what each nic asks for under (domain UUID, MAC) for it."""
    nics = [n for n in ctx.facts.requests if n.selector == "network"]
    if not nics:
        return
    from .leases import NetNic

    macs = dict(ctx.facts.network_macs)
    with ctx.ledger() as ledger:
        ledger.record_netnics(
            ctx.uuid, [NetNic(macs[n.id], n.id, n.value, n.vf_settings()) for n in nics if n.id in macs])


def start(ctx: _Context) -> int:
    """Re-assert the settings after libvirt's own device set-up (it rewrites MAC/VLAN, and qos with them)."""
    from . import netlink

    for h in ctx.holdings():
        settings = h.settings()
        if settings:
            netlink.apply(h.pf, h.vf_index, settings, via=RTNETLINK)
    return 0


def started(ctx: _Context) -> int:
    ledger = ctx.existing_ledger()
    if ledger is not None:
        with ledger:
            if ctx.my_leases(ledger):
                ledger.mark_started(ctx.uuid)
    return 0


def stopped(ctx: _Context) -> int:
    """Unplug representors; failures are logged and journaled, never raised (stopping cannot be refused)."""
    from .configure import unplug
    from .errors import VfpluginError

    if not ctx.config.ovs_offload_nics:
        # Nothing is plugged under this configuration: not even the ledger needs opening. A port plugged under
        # an earlier one goes at release end, which reads the representor from the lease.
        return 0
    ledger = ctx.existing_ledger()
    if ledger is None:
        return 0
    with ledger:
        problems = []
        for lease in ctx.my_leases(ledger):
            try:
                unplug(lease)
            except VfpluginError as e:
                problems.append(f"{lease.vf}: {e}")
        if problems:
            ledger.journal(
                "unplug", "failed", domain_uuid=ctx.uuid, domain_name=ctx.name, detail="; ".join(problems)
            )
    return 0


def release(ctx: _Context) -> int:
    """Put back VF settings, unplug, free this domain's leases (only this UUID's), journal; idempotent.

    Works from the ledger alone: a start refused because its XML was unusable must still give back."""
    from .configure import unconfigure
    from .log import LOG

    ledger = ctx.existing_ledger()
    if ledger is None:
        return 0
    with ledger:
        mine = ctx.my_leases(ledger)
        for lease in mine:
            for problem in unconfigure(ctx.config, ctx.sysfs, lease, None, via=RTNETLINK):
                LOG.warning("release: %s", problem)
                ledger.journal(
                    "restore", "failed", domain_uuid=ctx.uuid, domain_name=ctx.name, vf=lease.vf, detail=problem
                )
        for uuid in sorted({ctx.uuid} | {lease.domain_uuid for lease in mine}):
            ledger.release(uuid, reason="released", domain_name=ctx.name)
    return 0


def reconnect(ctx: _Context) -> int:
    """libvirtd restarted and found the domain running: re-assert its leases; exit 0 (else the VM dies)."""
    from .configure import plug
    from .errors import VfpluginError
    from .log import LOG

    held = ctx.holdings()
    if not held:
        return 0
    with ctx.ledger() as ledger:
        try:
            ledger.claim(ctx.uuid, ctx.name, [h.want() for h in held])
            ledger.mark_started(ctx.uuid)
        except VfpluginError as e:
            LOG.error("reconnect: inconsistent ledger, the running domain keeps its VFs: %s", e)
            ledger.journal(
                "reconnect", "inconsistent", domain_uuid=ctx.uuid, domain_name=ctx.name, detail=str(e)
            )
    for h in held:
        try:
            plug(ctx.config, ctx.sysfs, ctx.uuid, ctx.name, h)
        except VfpluginError as e:
            LOG.error("reconnect: re-plug %s: %s", h.vf, e)
    return 0


def incoming(ctx: _Context) -> int:
    """``migrate begin``/``restore begin``: the XML comes from elsewhere; point requests at free local VFs."""
    if not ctx.facts.requests:
        return 0
    from .inventory import discover
    from .rewrite import assign_and_reserve

    domain = ctx.domain()
    inventory = discover(ctx.config, ctx.sysfs)
    with ctx.ledger() as ledger:
        ledger.record_vfs(inventory.vfs)
        assign_and_reserve(domain, ctx.config, inventory.vfs, ledger, ctx.sysfs.cpu_nodes())
    ctx.out.write(domain.to_text())
    return 0


_HANDLERS: dict[tuple[str, str], Callable[[_Context], int]] = {
    ("prepare", "begin"): prepare,
    ("start", "begin"): start,
    ("started", "begin"): started,
    ("stopped", "end"): stopped,
    ("release", "end"): release,
    ("reconnect", "begin"): reconnect,
    ("migrate", "begin"): incoming,
    ("restore", "begin"): incoming,
}
