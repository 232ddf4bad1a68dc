"""Open vSwitch ports for switchdev representors: plug, unplug, list, and the plan that reconciles them.

Owns every ``ovs-vsctl`` call vfplugin makes (argv through vfplugin.run, an explicit ``--timeout``, never a
shell) and the translation of its failures into one-line OvsError messages that say what to do. A port
vfplugin plugs carries ``external_ids:vfplugin=1`` plus the owner's ``vm-uuid``, ``iface-id`` and
``attached-mac`` (the keys os-vif and OVN use), so ``plugged()`` finds exactly vfplugin's ports and nothing
else. Plug and unplug are idempotent: the hook may run them again after a libvirtd restart (``reconnect``)
and ``vfctl reconcile`` may repeat them at any time. A port without that mark is someone else's: ``unplug``
never deletes it and ``plug`` refuses to take it over or move it, naming its bridge and owner.

The ovsdb is ovs-vsctl's default unless the environment variable VFPLUGIN_OVSDB names another (passed as
``--db=``; the tests point it at their own ovsdb-server). ``reconcile_plan`` is pure. This module must never
decide which domains are running (the caller knows) nor read sysfs (sysfs.py finds representors).
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .addresses import canonical_uuid, parse_ifname, parse_mac, parse_vlan
from .errors import CommandFailed, HostError, InvalidValue, OvsError
from .log import LOG
from .run import run

ENV_VAR = "VFPLUGIN_OVSDB"
Completed = subprocess.CompletedProcess
OWNER_KEY = "vfplugin"  # external_ids:vfplugin=1 marks a port as vfplugin's


@dataclass(frozen=True)
class OvsPort:
    """A port vfplugin plugged, as ovsdb has it now."""

    name: str  # the representor netdev (port and interface share the name)
    bridge: str | None  # None if the interface is in no bridge (should not happen)
    vm_uuid: str | None
    iface_id: str | None
    mac: str | None
    tag: int | None
    owned: bool = True  # external_ids:vfplugin=1: vfplugin made it

    def owner(self) -> str:
        """Who the port belongs to, as a refusal names it."""
        if not self.owned:
            ids = ", ".join(f"{k}={v}" for k, v in (("iface-id", self.iface_id), ("vm-uuid", self.vm_uuid)) if v)
            return f"not vfplugin's ({ids or 'no owner recorded in external_ids'})"
        return f"vfplugin's, for domain {self.vm_uuid}"


@dataclass(frozen=True)
class WantedPort:
    """A port that should exist because a running domain holds the VF behind ``representor``."""

    bridge: str
    representor: str
    domain_uuid: str
    iface_id: str
    mac: str | None = None
    vlan: int | None = None


# --- pure: naming, argv, parsing, planning ------------------------------------------------------------------


def _name(value: str, what: str) -> str:
    name = parse_ifname(value, what)
    if name.startswith("-"):  # ovs-vsctl would read it as an option
        raise InvalidValue(what=what, value=value, problem="must not start with '-'")
    return name


def _quoted(value: str) -> str:
    """An ovsdb string literal: ovs-vsctl reads ``key="..."`` as a C string, so ':' ',' '=' stay data."""
    return json.dumps(value)


def plug_argv(
    bridge: str,
    representor: str,
    *,
    domain_uuid: str,
    iface_id: str,
    mac: str | None,
    vlan: int | None,
    move: bool = False,
) -> list[str]:
    """The ovs-vsctl commands (after the global options) of one plug transaction.

    ``move`` deletes the port first: ``--may-exist add-port`` refuses a port that sits on another bridge.
    Without a VLAN a stale ``tag`` is cleared, and without a MAC a stale ``attached-mac``, so a re-plug
    never keeps a previous owner's values.
    """
    add = ["--if-exists", "del-port", representor, "--", "add-port"] if move else ["--may-exist", "add-port"]
    argv = [
        "--", *add, bridge, representor,
        "--", "set", "Interface", representor,
        f"external_ids:vm-uuid={_quoted(domain_uuid)}",
        f"external_ids:iface-id={_quoted(iface_id)}",
        f"external_ids:{OWNER_KEY}=1",
    ]
    if mac:
        argv.append(f"external_ids:attached-mac={_quoted(mac)}")
    else:
        argv += ["--", "remove", "Interface", representor, "external_ids", "attached-mac"]
    if vlan is None:
        argv += ["--", "clear", "Port", representor, "tag"]
    else:
        argv += ["--", "set", "Port", representor, f"tag={vlan}"]
    return argv


def _atoms(value: Any) -> list[Any]:
    """An ovsdb JSON column value as a list: ``["set", [...]]`` -> items, a lone atom -> [atom]."""
    if isinstance(value, list) and len(value) == 2 and value[0] == "set":
        return list(value[1])
    return [value]


def _atom(value: Any) -> Any:
    items = _atoms(value)
    if not items:
        return None
    item = items[0]
    if isinstance(item, list) and len(item) == 2 and item[0] in ("uuid", "named-uuid"):
        return item[1]
    return item


def _map(value: Any) -> dict[str, str]:
    if isinstance(value, list) and len(value) == 2 and value[0] == "map":
        return {str(k): str(v) for k, v in value[1]}
    return {}


def _table(line: str) -> list[dict[str, Any]]:
    doc = json.loads(line)
    return [dict(zip(doc["headings"], row)) for row in doc["data"]]


def parse_plugged(output: str) -> list[OvsPort]:
    """Parse the three JSON tables ``plugged()`` asks for (Interface, Port, Bridge), one per line."""
    lines = [line for line in output.splitlines() if line.strip()]
    if len(lines) != 3:
        raise OvsError(problem=f"unexpected ovs-vsctl output: expected 3 JSON tables, got {len(lines)}")
    interfaces, ports, bridges = (_table(line) for line in lines)
    port_by_uuid = {_atom(p["_uuid"]): p for p in ports}
    bridge_of: dict[str, str] = {}
    for bridge in bridges:
        for port_uuid in _atoms(bridge["ports"]):
            port = port_by_uuid.get(_atom(port_uuid))
            if port is not None:
                bridge_of[port["name"]] = bridge["name"]
    tag_of = {p["name"]: _atom(p["tag"]) for p in ports}
    result = []
    for row in interfaces:
        ids = _map(row["external_ids"])
        name = row["name"]
        tag = tag_of.get(name)
        result.append(
            OvsPort(
                name=name,
                bridge=bridge_of.get(name),
                vm_uuid=ids.get("vm-uuid"),
                iface_id=ids.get("iface-id"),
                mac=ids.get("attached-mac"),
                tag=int(tag) if isinstance(tag, int) else None,
                owned=ids.get(OWNER_KEY) == "1",
            )
        )
    return sorted(result, key=lambda p: p.name)


def _matches(port: OvsPort, want: WantedPort) -> bool:
    return (
        port.bridge == want.bridge
        and port.vm_uuid == want.domain_uuid
        and port.iface_id == want.iface_id
        and (port.mac or "").lower() == (want.mac or "").lower()
        and port.tag == want.vlan
    )


def reconcile_plan(
    plugged: Sequence[OvsPort], wanted: Sequence[WantedPort]
) -> tuple[list[OvsPort], list[WantedPort]]:
    """What to unplug and what to (re-)plug so that vfplugin's ports are exactly ``wanted``.

    A plugged port nobody wants (its domain is gone) is unplugged. A wanted port that is missing, or
    plugged with another bridge, owner, iface-id, MAC or VLAN, is plugged: plug() corrects it in place
    (moving it between bridges if needed), so it is not unplugged first.
    """
    by_name: dict[str, WantedPort] = {}
    for w in wanted:
        if w.representor in by_name:
            raise OvsError(problem=f"representor {w.representor} is wanted twice; domains cannot share a VF")
        by_name[w.representor] = w
    have = {p.name: p for p in plugged}
    to_unplug = [p for p in sorted(plugged, key=lambda p: p.name) if p.name not in by_name]
    to_plug = [
        w for name, w in sorted(by_name.items()) if name not in have or not _matches(have[name], w)
    ]
    return to_unplug, to_plug


_NO_BRIDGE = re.compile(r"no bridge named (\S+)")
_DB_DOWN = re.compile(r"(\S+): database connection failed \(([^)]*)\)")


def classify(argv: Sequence[str], status: int | str, stderr: str, seconds: int) -> OvsError:
    """Turn a failed ovs-vsctl run into the one line a user needs: what is wrong and what to do."""
    text = " ".join(stderr.split())
    match = _NO_BRIDGE.search(text)
    if match:
        br = match.group(1)
        return OvsError(
            problem=f"bridge {br} does not exist; create it with 'ovs-vsctl add-br {br}' "
            f"or fix networks: in the vfplugin configuration"
        )
    match = _DB_DOWN.search(text)
    if match:
        return OvsError(
            problem=f"cannot reach ovsdb at {match.group(1)} ({match.group(2)}); "
            f"is openvswitch-switch running? (systemctl start openvswitch-switch)"
        )
    if status in ("timeout", -14, 142) or "Alarm clock" in text:
        # ovs-vsctl waits for ovs-vswitchd to apply a change; SIGALRM is how its --timeout ends the wait.
        return OvsError(
            problem=f"no answer from ovsdb/ovs-vswitchd within {seconds}s; is openvswitch-switch running? "
            f"(systemctl status openvswitch-switch)"
        )
    if status == "not installed":
        return OvsError(problem="ovs-vsctl not found; install openvswitch-switch (or openvswitch on Fedora)")
    first = next((line for line in stderr.splitlines() if line.strip()), "(no stderr)")
    return OvsError(problem=f"'{shlex.join(argv)}' failed ({status}): {first.strip()}")


# --- I/O: ovs-vsctl and ip ---------------------------------------------------------------------------------


def _vsctl(args: Sequence[str], timeout: float, *, accept: tuple[int, ...] = (0,)) -> Completed:
    """Run one ovs-vsctl transaction; OvsError (one line) on an exit status not in ``accept``."""
    env = os.environ
    seconds = max(1, math.ceil(timeout))  # ovs-vsctl takes whole seconds
    argv = ["ovs-vsctl", f"--timeout={seconds}"]
    if env.get(ENV_VAR):
        argv.append(f"--db={env[ENV_VAR]}")
    argv += list(args)
    try:
        # A little longer than ovs-vsctl's own limit, so that it reports the time-out itself.
        result = run(argv, timeout=seconds + 2, check=False)
    except CommandFailed as e:
        raise classify(argv, e.kwargs.get("status", "?"), str(e.kwargs.get("stderr", "")), seconds) from None
    if result.returncode not in accept:
        raise classify(argv, result.returncode, result.stderr, seconds)
    if result.returncode == 0 and result.stderr.strip():
        # "Error detected while setting up 'eth3_0'": the change is in ovsdb, vswitchd could not apply it.
        LOG.warning("ovs-vsctl: %s", " ".join(result.stderr.split()))
    return result


def _link_up(representor: str, timeout: float) -> None:
    try:
        run(["ip", "link", "set", "dev", representor, "up"], timeout=timeout)
    except CommandFailed as e:
        if "Cannot find device" in str(e.kwargs.get("stderr", "")):
            raise HostError(
                problem=f"representor {representor} does not exist; is the PF's eswitch in switchdev mode? "
                f"(devlink dev eswitch show pci/<PF address>; vfctl doctor checks it)"
            ) from None
        raise


def plug(
    bridge: str,
    representor: str,
    *,
    domain_uuid: str,
    iface_id: str,
    mac: str | None,
    vlan: int | None,
    timeout: float = 5.0,
) -> None:
    """Put ``representor`` up and into ``bridge`` with the owner's external_ids and VLAN tag; idempotent.

    ``mac`` may be None or "" (a hand-written hostdev without <mac>): attached-mac is then left unset.
    A port of that name that vfplugin did not make (no external_ids:vfplugin=1), on any bridge, is refused
    with its bridge and owner: vfplugin never takes over or moves someone else's port. One of vfplugin's own on
    another bridge is moved. Nothing is written to ovsdb when the representor does not exist. Raises OvsError
    (someone else's port, missing bridge, unreachable ovsdb, time-out) or HostError (no representor).
    """
    bridge = _name(bridge, "bridge name")
    representor = _name(representor, "representor name")
    domain_uuid = _uuid(domain_uuid)
    mac = parse_mac(mac) if mac else None
    if vlan is not None:
        vlan = parse_vlan(vlan)
    if not iface_id or any(ord(c) < 32 for c in iface_id):
        raise InvalidValue(what="iface-id", value=iface_id, problem="must be non-empty printable text")
    existing = port(representor, timeout=timeout)
    if existing is not None and not existing.owned:
        where = f"bridge {existing.bridge}" if existing.bridge else "no bridge"
        raise OvsError(
            problem=f"representor {representor} is already a port on {where}, {existing.owner()}; vfplugin "
            f"leaves it alone: remove it (ovs-vsctl del-port {representor}) or give the domain another VF"
        )
    move = existing is not None and existing.bridge not in (None, bridge)
    if move and existing is not None:
        LOG.warning("moving vfplugin's port %s from bridge %s to %s", representor, existing.bridge, bridge)
    _link_up(representor, timeout)
    _vsctl(plug_argv(bridge, representor, domain_uuid=domain_uuid, iface_id=iface_id, mac=mac, vlan=vlan,
                     move=move), timeout)
    LOG.info("plugged %s into %s (vm-uuid=%s iface-id=%s vlan=%s)", representor, bridge, domain_uuid,
             iface_id, vlan)


def unplug(representor: str, *, owner: str | None = None, timeout: float = 5.0) -> bool:
    """Remove the port named ``representor`` if vfplugin made it (and, with ``owner``, for that domain UUID);
    whether it did. No port is not an error; someone else's port is left alone (and logged)."""
    representor = _name(representor, "representor name")
    existing = port(representor, timeout=timeout)
    if existing is None:
        return False
    if not existing.owned or (owner is not None and existing.vm_uuid != _uuid(owner)):
        LOG.warning("leaving port %s on bridge %s alone: %s", representor, existing.bridge, existing.owner())
        return False
    # --if-exists: it may have gone since; the ownership read and the delete are two transactions, and only an
    # admin re-creating a port of this very name in between could be caught by it
    _vsctl(["--if-exists", "del-port", representor], timeout)
    LOG.info("unplugged %s", representor)
    return True


def plugged(timeout: float = 5.0) -> list[OvsPort]:
    """Every port carrying external_ids:vfplugin=1, with its bridge, owner and VLAN tag, sorted by name."""
    return _ports(f"external_ids:{OWNER_KEY}=1", timeout)


def port(representor: str, *, timeout: float = 5.0) -> OvsPort | None:
    """The port named ``representor`` whoever made it (``owned`` says whether vfplugin did), or None."""
    found = _ports(f"name={_quoted(_name(representor, 'representor name'))}", timeout)
    return found[0] if found else None


def _ports(condition: str, timeout: float) -> list[OvsPort]:
    output = _vsctl(
        [
            "--format=json",
            "--", "--columns=name,external_ids", "find", "Interface", condition,
            "--", "--columns=_uuid,name,tag", "list", "Port",
            "--", "--columns=name,ports", "list", "Bridge",
        ],
        timeout,
    ).stdout
    try:
        return parse_plugged(output)
    except (ValueError, KeyError, TypeError) as e:
        raise OvsError(problem=f"cannot parse ovs-vsctl's JSON output: {e}") from None


def bridge_exists(bridge: str, *, timeout: float = 5.0) -> bool:
    """Whether ``bridge`` exists (``br-exists`` exits 0: yes, 2: no); OvsError if ovsdb is unreachable."""
    bridge = _name(bridge, "bridge name")
    return _vsctl(["br-exists", bridge], timeout, accept=(0, 2)).returncode == 0


def other_config(key: str, *, timeout: float = 5.0) -> str | None:
    """``Open_vSwitch . other_config:<key>`` (e.g. hw-offload), or None when it is not set."""
    out = _vsctl(["--if-exists", "get", "Open_vSwitch", ".", f"other_config:{key}"], timeout).stdout.strip()
    if not out:
        return None
    return str(json.loads(out)) if out.startswith('"') else out


def _uuid(value: str) -> str:
    try:
        return canonical_uuid(value)
    except (ValueError, AttributeError):
        raise InvalidValue(what="domain UUID", value=value, problem="expected a UUID") from None
