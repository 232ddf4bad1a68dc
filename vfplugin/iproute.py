"""One VF's settings through iproute2's ``ip``: the hooks' way to rtnetlink (netlink.py owns the contract).

``ip link show dev PF`` lists the PF's VFs, one line each (``vf 3 link/ether ... , vlan 100, max_tx_rate
100Mbps, spoof checking off, link-state auto, trust on``); ``ip link set dev PF vf N <setting> ...`` writes.
The hooks are a fresh process on every event and each ``ip`` is one exec, so the common case is one ``ip`` per
event, through ``ip -batch -``: at prepare the PF's report *before* the change and every setting in one
command; at release every saved setting in one command. The kernel applies the attributes of one request in
its own order and stops at the first it refuses, without saying which: when the one command fails,
netlink.py puts back what may have been set and retries one setting per command, so the refusal names the
setting, the PF and the errno as before. iproute2 reports a refusal as ``RTNETLINK answers: <strerror>``
(``Operation not supported`` for igb's link_state), mapped back to the errno it came from.
Every ``ip`` runs through run.spawn (argv, absolute path, timeout) with ``LC_ALL=C``, as libvirt runs hooks.
Parsing is pure (``vf_settings``), without ``re`` or ``json`` (each costs a hook more than the work), and tested
on output captured from real igb VFs in the lab.
"""

from __future__ import annotations

import errno
import os

from .errors import CommandFailed, NetdevMissing
from .netlink import no_such_vf, rates, refused
from .run import spawn

TYPE_CHECKING = False  # typing.TYPE_CHECKING would import typing (see hook.py)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

# /sbin/ip on Debian (merged /usr or not) and Fedora (/sbin -> usr/sbin) alike; absolute, whatever PATH says.
IP = "/sbin/ip"
TIMEOUT = 10.0
ENV = {"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}  # C: the errno is read back from strerror text
RTNETLINK = "RTNETLINK answers: "
_BY_STRERROR = {os.strerror(code): code for code in errno.errorcode}


def vf_settings(text: str, vf_index: int) -> dict[str, Any] | None:
    """The settings of VF ``vf_index`` in ``ip link show dev PF`` output (``-d`` or not), in the request's
    words; None when the PF lists no such VF. What the driver cannot tell (no ``trust``/``spoof checking``: the
    kernel said -1) is left out, as it cannot be put back; an absent VLAN, qos or rate is 0."""
    prefix = f"vf {vf_index} "
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(prefix):
            return _settings(line)
    return None


def _settings(line: str) -> dict[str, Any]:
    fields = [f.strip() for f in line.split(",")]
    words = fields[0].split()  # vf 3 link/ether 52:54:00:1a:b0:0d brd ff:ff:ff:ff:ff:ff
    state: dict[str, Any] = {"vlan": 0, "qos": 0, "min_tx_rate": 0, "max_tx_rate": 0}
    if len(words) > 3 and words[2].startswith("link/"):
        state["mac"] = words[3]
    for field in fields[1:]:
        name, _, value = field.rpartition(" ")
        if name in ("vlan", "qos"):
            state[name] = int(value)
        elif name in ("max_tx_rate", "min_tx_rate") and value.endswith("Mbps"):
            state[name] = int(value[:-4])
        elif name in ("spoof checking", "trust") and value in ("on", "off"):
            state["spoofchk" if name == "spoof checking" else "trust"] = value == "on"
        elif name == "link-state" and value in ("auto", "enable", "disable"):
            state["link_state"] = value
    return state


def setting_words(key: str, value: Any, current: Mapping[str, Any] | None) -> list[str]:
    """The words of ``ip link set ... vf N`` for one setting. A rate without ``current``: that one rate alone
    (iproute2 reads the other one from the kernel and sends both, as IFLA_VF_RATE carries both)."""
    if key == "mac":
        return ["mac", str(value)]
    if key == "vlan":
        vlan, qos = value if isinstance(value, tuple) else (value, 0)
        return ["vlan", str(int(vlan)), "qos", str(int(qos))]
    if key in ("spoofchk", "trust"):
        return [key, "on" if value else "off"]
    if key == "link_state":
        return ["state", str(value)]
    if current is None:
        return [key, str(int(value))]
    both = rates(key, value, current)
    return ["min_tx_rate", str(both["min_tx_rate"]), "max_tx_rate", str(both["max_tx_rate"])]


def set_argv(pf: str, vf_index: int, key: str, value: Any, current: Mapping[str, Any]) -> list[str]:
    """``ip link set`` for one setting (both rates together: the kernel takes them as one attribute)."""
    return [IP, "link", "set", "dev", pf, "vf", str(vf_index), *setting_words(key, value, current)]


def set_all_line(pf: str, vf_index: int, pairs: Sequence[tuple[str, Any]]) -> str:
    """One ``ip -batch`` line that sets every (key, value) of ``pairs`` on the VF."""
    words = ["link", "set", "dev", pf, "vf", str(vf_index)]
    for key, value in pairs:
        words += setting_words(key, value, None)
    return " ".join(words)


def failure(stderr: str) -> tuple[int, str]:
    """(errno or 0, what else ip said) from ip's stderr: ``RTNETLINK answers: Operation not supported`` ->
    (EOPNOTSUPP, ""); a kernel extack (``Error: ...``) or anything else -> (0, that text)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("Command failed")]
    for line in reversed(lines):
        if line.startswith(RTNETLINK):
            code = _BY_STRERROR.get(line[len(RTNETLINK) :], 0)
            if code:
                return code, "; ".join(x for x in lines if x != line)
            break
    return 0, "; ".join(lines) or "ip failed without a message"


def _missing(stderr: str, pf: str) -> bool:
    # "ip link show dev X" and "ip link set dev X" say it in two ways
    return f'Device "{pf}" does not exist' in stderr or f'Cannot find device "{pf}"' in stderr


class Session:
    """Reading and setting VF ``vf_index`` of ``pf`` with ``ip``; nothing held between calls."""

    def __init__(self, pf: str, vf_index: int, what: str) -> None:
        self.pf = pf
        self.vf_index = vf_index
        self.what = what

    def close(self) -> None:
        pass

    def _ip(self, argv: list[str], batch: str = "") -> tuple[int, str, str]:
        status, out, err = spawn(argv, timeout=TIMEOUT, input=batch, env=ENV)
        if status != 0 and _missing(err, self.pf):
            raise NetdevMissing(settings=self.what, vf_index=self.vf_index, pf=self.pf)
        return status, out, err

    def _state(self, out: str) -> dict[str, Any]:
        state = vf_settings(out, self.vf_index)
        if state is None:
            raise no_such_vf(self.pf, self.vf_index)
        return state

    def read(self) -> dict[str, Any]:
        try:
            status, out, err = self._ip([IP, "link", "show", "dev", self.pf])
        except CommandFailed as e:
            raise refused(self.pf, self.vf_index, "(read)", "-", 0, str(e)) from None
        if status != 0:
            code, detail = failure(err)
            raise refused(self.pf, self.vf_index, "(read)", "-", code, detail)
        return self._state(out)

    def set(self, key: str, value: Any, current: Mapping[str, Any]) -> None:
        try:
            status, _, err = self._ip(set_argv(self.pf, self.vf_index, key, value, current))
        except CommandFailed as e:  # ip hanging: the setting was not made
            raise refused(self.pf, self.vf_index, key, value, 0, str(e)) from None
        if status != 0:
            code, detail = failure(err)
            raise refused(self.pf, self.vf_index, key, value, code, detail)

    def read_and_set_all(self, pairs: Sequence[tuple[str, Any]]) -> tuple[dict[str, Any], bool]:
        """(the VF's settings before, whether every setting was made) in one ``ip``: the PF's report, then one
        request with every setting. Not all made: any of them may have been (the kernel stops at the first it
        refuses)."""
        batch = f"link show dev {self.pf}\n{set_all_line(self.pf, self.vf_index, pairs)}\n"
        try:
            status, out, err = self._ip([IP, "-batch", "-"], batch)
        except CommandFailed:
            return self.read(), False
        if vf_settings(out, self.vf_index) is None and status != 0:  # the report itself failed
            code, detail = failure(err)
            raise refused(self.pf, self.vf_index, "(read)", "-", code, detail)
        return self._state(out), status == 0

    def set_all(self, pairs: Sequence[tuple[str, Any]]) -> bool:
        """Every setting in one ``ip`` request; False when ``ip`` failed (some may have been made)."""
        try:
            status, _, _ = self._ip([IP, "-batch", "-"], set_all_line(self.pf, self.vf_index, pairs) + "\n")
        except CommandFailed:
            return False
        return status == 0
