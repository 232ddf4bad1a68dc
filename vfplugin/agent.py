"""vfplugind: the per-host agent that keeps every defined domain startable with plain ``virsh start``.

libvirt events + the ledger's journal -> materialize requests, re-point stopped domains whose VF was taken,
reconcile after every (re)connection, keep network ports in step. A libvirt-python client with libvirt's
default event loop in a thread of its own; the main thread does all the work, one item at a time:

- a domain defined or updated by anyone (``DEFINED``), stopped, or undefined: its persistent XML is read again;
- the ledger changed (a claim by the hook, a release, ``vfctl``): noticed by polling the journal's newest id
  (``Ledger.last_event_id``, one indexed read every ``POLL`` seconds), since claims raise no libvirt event;
- then every stopped domain that is not startable (startable.py says why) gets VFs chosen by the same code
  as ``vfctl define`` (rewrite.assign: sticky, NUMA, spread), offered VFs no other stopped domain points at
  first, and is redefined through libvirt when, and only when, its XML changed. A running domain is never
  redefined. A request it cannot satisfy is journaled once (``vfctl doctor``/``history`` show it) and tried
  again only when something changes (a release, a new VF, a redefinition).

It reserves nothing (a pointer to a free VF is all the hook's claim needs) and writes the ledger only to
journal what it did, one short transaction each: the hook's claims never wait on it for long. Killed at any
instruction it loses nothing (libvirt holds the definitions, the ledger the leases); started again it reads
everything afresh. Without it everything still works: the hook enforces, ``vfctl start`` chooses.
It never runs inside a hook (libvirt calls would deadlock there) and is the only long-lived libvirt client.
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import sys
import threading
import time
from typing import Any

from . import agentpid, virt
from .config import Config
from .errors import LibvirtError, VfpluginError
from .log import LOG, setup
from .startable import Defined, action, live_leases, pending, pointed_at, tiers, why_not_startable

POLL = 0.1  # seconds between two reads of the journal's newest id
RESCAN = 10.0  # seconds between two discoveries of the host's VFs (a new VF may satisfy a waiting request)
BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)  # seconds between reconnection attempts; the last one repeats
DEFAULT_METRICS = "127.0.0.1:9808"

# libvirt constants (libvirt-python names them; spelled here so the module reads without importing it)
EVENT_ID_LIFECYCLE = 0  # VIR_DOMAIN_EVENT_ID_LIFECYCLE
NETWORK_EVENT_ID_LIFECYCLE = 0  # VIR_NETWORK_EVENT_ID_LIFECYCLE
DEFINED, UNDEFINED, STARTED, STOPPED = 0, 1, 2, 5  # VIR_DOMAIN_EVENT_*
LIST_ALL = 0


class Agent:
    """One agent: a configuration, a libvirt URI, and what it knows of the defined domains."""

    def __init__(self, cfg: Config, uri: str) -> None:
        self.cfg = cfg
        self.uri = uri
        self.conn: Any = None
        self.domains: dict[str, Defined] = {}
        self.failed: dict[str, str] = {}  # uuid -> the failure journaled last for it
        self.events: queue.Queue[tuple[str, str]] = queue.Queue()
        self.stopping = threading.Event()
        self._ledger: Any = None
        self._ledger_inode: tuple[int, int] | None = None
        self._last_id = -1
        self._known: frozenset[str] = frozenset()
        self._vfs: tuple[Any, ...] = ()
        self._inventory: Any = None
        self._port_failures: set[str] = set()
        self._cpu_nodes: dict[int, int] = {}
        self._scanned = 0.0
        self._synced = False  # whether _after_connect ran on the current connection

    # --- the loop ---------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Until ``stopping`` is set: connect (with back-off), then react to events and ledger changes."""
        import libvirt

        attempt = 0
        while not self.stopping.is_set():
            if self.conn is None:
                if not self._connect():
                    self.stopping.wait(BACKOFF[min(attempt, len(BACKOFF) - 1)])
                    attempt += 1
                    continue
                attempt = 0
            try:
                if not self._synced:  # a new connection: reconcile and read everything (again if it failed)
                    self._after_connect()
                    self._synced = True
                self.step(POLL)
            except (LibvirtError, libvirt.libvirtError) as e:  # the daemon went away mid-call
                LOG.warning("%s", " ".join(str(e).split()))
                self._drop_connection()
            except VfpluginError as e:  # the ledger is locked or unwritable: say so, try again later
                LOG.error("%s", e)
                self.stopping.wait(1.0)
            except Exception:  # a bug: keep the traceback, start over from a fresh connection
                LOG.exception("internal error; reconnecting")
                self._drop_connection()
                self.stopping.wait(1.0)

    def step(self, timeout: float) -> None:
        """Wait up to ``timeout`` for an event, handle every queued one, then converge if anything changed."""
        changed = False
        try:
            kind, uuid = self.events.get(timeout=timeout)
        except queue.Empty:
            pass
        else:
            changed |= self._handle(kind, uuid)
            while True:
                try:
                    kind, uuid = self.events.get_nowait()
                except queue.Empty:
                    break
                changed |= self._handle(kind, uuid)
        if self.conn is None:
            return
        changed |= self._ledger_changed()
        if time.monotonic() - self._scanned > RESCAN:
            changed |= self._discover()
        if changed:
            self.converge()

    def _handle(self, kind: str, uuid: str) -> bool:
        if self.conn is None:
            return False  # queued before the connection closed: the next one reads everything afresh
        if kind == "closed":
            LOG.warning("connection to %s closed (%s); reconnecting", self.uri, uuid)
            self._drop_connection()
            return False
        if kind == "undefined":
            gone = self.domains.pop(uuid, None)
            self._withdraw(uuid, gone.name if gone else None, "domain undefined")
            return True
        if kind == "network":
            return True
        self._refresh(uuid)  # defined, started, stopped: read it again
        return True

    # --- libvirt ----------------------------------------------------------------------------------------------

    def _connect(self) -> bool:
        import libvirt

        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as e:
            LOG.warning("cannot connect to %s: %s", self.uri, " ".join(str(e).split()))
            return False
        try:
            conn.registerCloseCallback(lambda _c, reason, _o: self.events.put(("closed", str(reason))), None)
            conn.domainEventRegisterAny(None, EVENT_ID_LIFECYCLE, self._on_domain, None)
            conn.networkEventRegisterAny(None, NETWORK_EVENT_ID_LIFECYCLE, self._on_network, None)
            if not self.uri.startswith(("qemu:///", "test:///")):
                conn.setKeepAlive(5, 3)  # a remote daemon that hangs is noticed; a local socket says EOF
        except libvirt.libvirtError as e:
            LOG.warning("cannot register for events on %s: %s", self.uri, " ".join(str(e).split()))
            _close(conn)
            return False
        self.conn = conn
        LOG.info("connected to %s", self.uri)
        return True

    def _drop_connection(self) -> None:
        """Forget the connection and what was read through it: the next one reconciles and reads afresh."""
        if self.conn is not None:
            _close(self.conn)
        self.conn = None
        self._synced = False

    def _on_domain(self, _conn: Any, dom: Any, event: int, _detail: int, _opaque: Any) -> None:
        kind = {DEFINED: "defined", UNDEFINED: "undefined", STARTED: "started", STOPPED: "stopped"}.get(event)
        if kind is not None:
            self.events.put((kind, dom.UUIDString()))

    def _on_network(self, _conn: Any, net: Any, _event: int, _detail: int, _opaque: Any) -> None:
        self.events.put(("network", net.name()))

    def _after_connect(self) -> None:
        """After each (re)connection: reconcile the ledger with what runs, then read every domain again."""
        self._reconcile()
        self._discover()
        self.domains = {}
        for dom in virt.call("list domains", self.conn.listAllDomains, LIST_ALL):
            self._read(dom)
        for uuid in [u for u in self.failed if u not in self.domains]:
            self._withdraw(uuid, None, "domain no longer defined")
        self._last_id = -1  # converge now, whatever the journal says
        self._ledger_changed()
        self.converge()
        LOG.info("watching %d defined domains, %d VFs", len(self.domains), len(self._known))

    def _reconcile(self) -> None:
        from .reconcile import reconcile

        try:
            report = reconcile(self.cfg, self.uri)
        except VfpluginError as e:
            LOG.error("reconcile after connecting: %s", e)
            return
        for line in report.fixes:
            LOG.info("reconcile: %s", line)
        for line in report.failures:
            LOG.warning("reconcile: %s", line)

    def _refresh(self, uuid: str) -> None:
        import libvirt

        try:
            dom = self.conn.lookupByUUIDString(uuid)
        except libvirt.libvirtError:
            self.domains.pop(uuid, None)  # gone meanwhile (a transient domain that stopped)
            return
        self._read(dom)

    def _read(self, dom: Any) -> Defined | None:
        """Read one domain's persistent XML into ``domains`` (a transient or unreadable one is left out)."""
        import libvirt

        from .domread import read_domain

        try:
            uuid, name = dom.UUIDString(), dom.name()
            if not dom.isPersistent():
                self.domains.pop(uuid, None)
                return None
            active = bool(dom.isActive())
            xml = dom.XMLDesc(virt.XML_INACTIVE)
        except libvirt.libvirtError as e:
            LOG.debug("domain vanished while read: %s", e)
            return None
        try:
            facts = read_domain(xml.encode("utf-8"), source=f"domain {name}")
        except VfpluginError as e:
            self.domains.pop(uuid, None)
            if "urn:vfplugin:1" in xml:  # a request that cannot be read: say so once, like an unsatisfiable one
                self._fail(uuid, name, "materialize", str(e))
            return None
        defined = Defined(uuid=uuid, name=name, active=active, facts=facts)
        self.domains[uuid] = defined
        return defined

    # --- the ledger and the host ------------------------------------------------------------------------------

    def ledger(self) -> Any:
        """The ledger, opened once and again if the file was replaced (moved aside and rebuilt)."""
        from .ledger import Ledger

        try:
            st = os.stat(self.cfg.ledger)
            inode: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            inode = None
        if self._ledger is None or inode != self._ledger_inode:
            if self._ledger is not None:
                self._ledger.close()
            self._ledger = Ledger.open(self.cfg.ledger, ttl=self.cfg.reservation_ttl)
            st = os.stat(self.cfg.ledger)
            self._ledger_inode = (st.st_dev, st.st_ino)
            self._last_id = -1
        return self._ledger

    def _ledger_changed(self) -> bool:
        newest = self.ledger().last_event_id()
        changed, self._last_id = newest != self._last_id, newest
        return changed

    def _discover(self) -> bool:
        """Read the host's VFs again; True when the set changed."""
        from .inventory import discover
        from .sysfs import Sysfs

        self._scanned = time.monotonic()
        sysfs = Sysfs(self.cfg.sysfs_root)
        inventory = discover(self.cfg, sysfs)
        known = frozenset(str(v.address) for v in inventory.vfs)
        changed = known != self._known
        if changed:
            self.ledger().record_vfs(inventory.vfs)
        self._inventory, self._vfs, self._known = inventory, inventory.vfs, known
        self._cpu_nodes = sysfs.cpu_nodes()
        return changed

    # --- making domains startable -----------------------------------------------------------------------------

    def converge(self) -> None:
        """Make every stopped domain startable that can be; journal what cannot, once."""
        live = live_leases(self.ledger().leases())
        for uuid in list(self.domains):
            domain = self.domains.get(uuid)
            if domain is None:
                continue
            why = why_not_startable(domain, live, self._known)
            if why is not None:
                self.make_startable(domain, why)
                live = live_leases(self.ledger().leases())
            elif uuid in self.failed and not domain.active:
                self._succeeded(domain, "startable again")
        self._sync_ports()

    def make_startable(self, known: Defined, why: str) -> None:
        """Choose VFs for the nics of one stopped domain (read afresh from libvirt) and redefine it."""
        import libvirt

        from .domxml import parse_domain
        from .errors import NoCandidate
        from .rewrite import assign

        try:
            dom = self.conn.lookupByUUIDString(known.uuid)
            if dom.isActive():
                return  # never redefine a running domain: its next start will be made startable
            before = dom.XMLDesc(virt.XML_INACTIVE)
        except libvirt.libvirtError:
            self.domains.pop(known.uuid, None)
            return
        try:
            domain = parse_domain(before.encode("utf-8"), source=f"domain {known.name}")
            fresh = Defined(known.uuid, known.name, False, domain.facts)
            self.domains[known.uuid] = fresh
            ledger = self.ledger()
            why = why_not_startable(fresh, live_leases(ledger.leases()), self._known) or ""
            if not why:
                return  # the copy held was stale: it is startable as it is
            word = action(fresh)
            domain.drop_stale()
            own = fresh.pointers.values()
            offers = tiers(self._vfs, pointed_at(self.domains.values(), known.uuid), own)
            error: VfpluginError | None = None
            for vfs in offers or [[]]:
                try:
                    choices = assign(domain, domain.requests(), self.cfg, vfs, ledger, self._cpu_nodes)
                    error = None
                    break
                except NoCandidate as e:
                    error = e
            if error is not None:
                raise error
        except VfpluginError as e:
            self._fail(known.uuid, known.name, action(known), str(e))
            return
        after = domain.to_text()
        if after == before:
            return
        try:
            virt.call(f"redefine {known.name}", self.conn.defineXML, after)
        except LibvirtError as e:
            if self.conn.isAlive():
                self._fail(known.uuid, known.name, word, str(e))
                return
            raise  # the connection is gone: reconnect, then start over
        changed = [a for a in choices if fresh.pointers.get(a.nic.id) != str(a.vf.address)]
        LOG.info("%s %s (%s): %s", word, known.name, why, "; ".join(a.describe() for a in changed))
        for a in changed:
            ledger.journal(word, "ok", domain_uuid=known.uuid, domain_name=known.name,
                           vf=str(a.vf.address), detail=f"{why}: {a.describe()}")
        self.failed.pop(known.uuid, None)
        self._read(dom)

    def _fail(self, uuid: str, name: str, word: str, problem: str) -> None:
        """Journal a request that cannot be satisfied, once per distinct problem."""
        if self.failed.get(uuid) == problem:
            return
        LOG.warning("%s %s: %s", word, name, problem)
        self.ledger().journal(word, "failed", domain_uuid=uuid, domain_name=name, detail=problem)
        self.failed[uuid] = problem

    def _succeeded(self, domain: Defined, detail: str) -> None:
        self.failed.pop(domain.uuid, None)
        self.ledger().journal(action(domain), "ok", domain_uuid=domain.uuid, domain_name=domain.name,
                              detail=detail)

    def _withdraw(self, uuid: str, name: str | None, why: str) -> None:
        if self.failed.pop(uuid, None) is not None:
            self.ledger().journal("materialize", "withdrawn", domain_uuid=uuid, domain_name=name, detail=why)

    def load_failures(self) -> None:
        """What a previous run journaled as unsatisfiable, so that it is not journaled again."""
        from .startable import ACTIONS

        for uuid, event in pending(self.ledger().history(actions=ACTIONS)).items():
            self.failed[uuid] = str(getattr(event, "detail", ""))

    def _sync_ports(self) -> None:
        """Reclaim ports of guarded hostdev networks in step with the ledger (netports.py): on every change of
        the ledger and every network event (a restarted network has lost its counts). A failure is logged
        when it first appears, not on every pass."""
        from .netports import sync

        try:
            fixes, failures = sync(self.conn, self.cfg, self.ledger(), self._inventory)
        except VfpluginError as e:
            fixes, failures = [], [str(e)]
        for line in fixes:
            LOG.info("ports: %s", line)
        for line in sorted(set(failures) - self._port_failures):
            LOG.warning("ports: %s", line)
        self._port_failures = set(failures)


def _close(conn: Any) -> None:
    import libvirt

    try:
        conn.unregisterCloseCallback()
    except libvirt.libvirtError:
        pass
    try:
        conn.close()
    except libvirt.libvirtError:
        pass


# --- the program --------------------------------------------------------------------------------------------


def _event_loop() -> None:
    import libvirt

    while True:
        libvirt.virEventRunDefaultImpl()


def _metrics(cfg: Config, address: str) -> None:
    """Serve the host's metrics on ``address`` (``ADDR:PORT``); '' or 'off' serves nothing."""
    if address in ("", "off"):
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit() or not host:
        raise VfpluginError(detail=f"--metrics-address {address!r}: expected ADDR:PORT (e.g. {DEFAULT_METRICS}) or off")
    from prometheus_client import start_http_server

    from .metrics import registry

    try:
        start_http_server(int(port), host.strip("[]"), registry=registry(cfg))
    except OSError as e:
        LOG.error("metrics: cannot listen on %s: %s; serving none", address, e.strerror)
        return
    LOG.info("metrics on http://%s/metrics", address)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vfplugind",
        description="Keep every defined domain startable with plain virsh start: choose VFs for requests "
        "defined by any client, re-point stopped domains whose VF another domain took, reconcile after "
        "libvirtd restarts. Runs in the foreground.",
    )
    p.add_argument("--config", help="configuration file (default: $VFPLUGIN_CONFIG or /etc/vfplugin/vfplugin.yaml)")
    p.add_argument("-c", "--connect", default="qemu:///system", help="libvirt URI (default: qemu:///system)")
    p.add_argument(
        "--metrics-address", default=DEFAULT_METRICS, metavar="ADDR:PORT",
        help=f"serve Prometheus metrics on http://ADDR:PORT/metrics (default: {DEFAULT_METRICS}; 'off' or '' "
        "serves none)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages, and to stderr too")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup("vfplugind", verbose=args.verbose)
    if not os.path.exists("/dev/log"):
        LOG.echo = True  # no syslog daemon or journald here (a container, a lab host): stderr is the log
    from .config import load

    try:
        cfg = load(args.config)
        from .ledger import Ledger

        Ledger.open(cfg.ledger, ttl=cfg.reservation_ttl).close()  # its directory, where the pid file goes
        lock = agentpid.hold(cfg.ledger)
        _metrics(cfg, args.metrics_address)
    except VfpluginError as e:
        print(f"vfplugind: {e}", file=sys.stderr)
        return e.exit_code
    import libvirt

    # Everything the agent uses, imported now: files an upgrade replaces beneath a running agent must not mix
    # two versions in one process (it runs the code it started with until it is restarted).
    from . import domread, domxml, inventory, netports, reconcile, rewrite, sysfs  # noqa: F401

    virt._libvirt()  # libvirt-python's default error printer off: the agent logs what matters, once
    libvirt.virEventRegisterDefaultImpl()  # before any connection is opened
    threading.Thread(target=_event_loop, name="libvirt-events", daemon=True).start()
    agent = Agent(cfg, args.connect)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _s, _f: agent.stopping.set())
    LOG.info("vfplugind %d started: %s, ledger %s", os.getpid(), args.connect, cfg.ledger)
    try:
        agent.load_failures()
        agent.run()
    except VfpluginError as e:
        LOG.error("%s", e)
        return e.exit_code
    except Exception:
        LOG.exception("internal error")
        return 70
    finally:
        os.close(lock)
    LOG.info("vfplugind stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
