"""One VF's settings through iproute2's ``ip``: the hooks' way to rtnetlink (netlink.py owns the contract).

``ip -j link show dev PF`` reads the PF's ``vfinfo_list`` (MAC, VLAN/qos, rates, spoof checking, link state,
trust); ``ip link set dev PF vf N <setting> ...`` writes one setting per call, so a refusal names the setting.
iproute2 reports a refusal as ``RTNETLINK answers: <strerror>`` (``Operation not supported`` for igb's
link_state): the text is mapped back to the errno it came from, so the message is the same as pyroute2's
(``EOPNOTSUPP``). Every ``ip`` runs through run.py (argv list, timeout) with ``LC_ALL=C``, as libvirt runs hooks.
It never decides anything: parsing is pure (``vf_settings``) and tested on output captured from real igb VFs.
"""

from __future__ import annotations

import errno
import os

from .errors import CommandFailed, NetdevMissing
from .netlink import no_such_vf, rates, refused
from .run import run

TYPE_CHECKING = False  # typing.TYPE_CHECKING would import typing (see hook.py)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Optional

# /sbin/ip on Debian (merged /usr or not) and Fedora (/sbin -> usr/sbin) alike; absolute, whatever PATH says.
IP = "/sbin/ip"
TIMEOUT = 10.0
ENV = {"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}  # C: the errno is read back from strerror text
RTNETLINK = "RTNETLINK answers: "
_BY_STRERROR = {os.strerror(code): code for code in errno.errorcode}


def vf_settings(text: str, vf_index: int) -> Optional[dict[str, Any]]:
    """The settings of VF ``vf_index`` in ``ip -j link show dev PF`` output, in the request's words; None when
    the PF lists no such VF. Values the driver cannot tell (no ``trust``/``spoofchk`` key: the kernel said -1)
    are left out, as they cannot be put back; absent VLAN, qos and rates are 0."""
    import json  # the settings path only: a VF without settings never gets here (tests/test_hook.py HEAVY)

    links = json.loads(text)
    for link in links if isinstance(links, list) else ():
        for vf in link.get("vfinfo_list", ()):
            if vf.get("vf") == vf_index:
                return _settings(vf)
    return None


def _settings(vf: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = {"mac": vf.get("address", "")}
    # iproute2 prints the kernel's IFLA_VF_VLAN_LIST as "vlan_list" (one entry for 802.1Q), else a flat
    # "vlan"/"qos"; either leaves out a zero.
    vlans = vf.get("vlan_list") or [vf]
    state["vlan"] = int(vlans[0].get("vlan", 0))
    state["qos"] = int(vlans[0].get("qos", 0))
    for key in ("spoofchk", "trust"):
        if isinstance(vf.get(key), bool):
            state[key] = vf[key]
    if vf.get("link_state") in ("auto", "enable", "disable"):
        state["link_state"] = vf["link_state"]
    rate = vf.get("rate")
    if isinstance(rate, dict):
        state["min_tx_rate"] = int(rate.get("min_tx", 0))
        state["max_tx_rate"] = int(rate.get("max_tx", 0))
    return state


def set_argv(pf: str, vf_index: int, key: str, value: Any, current: Mapping[str, Any]) -> list[str]:
    """``ip link set`` for one setting (both rates together: the kernel takes them as one attribute)."""
    argv = [IP, "link", "set", "dev", pf, "vf", str(vf_index)]
    if key == "mac":
        return argv + ["mac", str(value)]
    if key == "vlan":
        vlan, qos = value if isinstance(value, tuple) else (value, 0)
        return argv + ["vlan", str(int(vlan)), "qos", str(int(qos))]
    if key in ("spoofchk", "trust"):
        return argv + [key, "on" if value else "off"]
    if key == "link_state":
        return argv + ["state", str(value)]
    both = rates(key, value, current)
    return argv + ["min_tx_rate", str(both["min_tx_rate"]), "max_tx_rate", str(both["max_tx_rate"])]


def failure(stderr: str) -> tuple[int, str]:
    """(errno or 0, what else ip said) from ip's stderr: ``RTNETLINK answers: Operation not supported`` ->
    (EOPNOTSUPP, ""); a kernel extack (``Error: ...``) or anything else -> (0, that text)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(RTNETLINK):
            text = line[len(RTNETLINK):]
            code = _BY_STRERROR.get(text, 0)
            others = "; ".join(x for x in lines if x != line)
            return (code, others) if code else (0, "; ".join(lines))
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

    def _ip(self, argv: list[str]) -> tuple[int, str, str]:
        done = run(argv, timeout=TIMEOUT, check=False, env=ENV)
        if done.returncode != 0 and _missing(done.stderr, self.pf):
            raise NetdevMissing(settings=self.what, vf_index=self.vf_index, pf=self.pf)
        return done.returncode, done.stdout, done.stderr

    def read(self) -> dict[str, Any]:
        try:
            status, out, err = self._ip([IP, "-j", "link", "show", "dev", self.pf])
        except CommandFailed as e:
            raise refused(self.pf, self.vf_index, "(read)", "-", 0, str(e)) from None
        if status != 0:
            code, detail = failure(err)
            raise refused(self.pf, self.vf_index, "(read)", "-", code, detail)
        state = vf_settings(out, self.vf_index)
        if state is None:
            raise no_such_vf(self.pf, self.vf_index)
        return state

    def set(self, key: str, value: Any, current: Mapping[str, Any]) -> None:
        try:
            status, _, err = self._ip(set_argv(self.pf, self.vf_index, key, value, current))
        except CommandFailed as e:  # ip missing or hanging: the setting was not made
            raise refused(self.pf, self.vf_index, key, value, 0, str(e)) from None
        if status != 0:
            code, detail = failure(err)
            raise refused(self.pf, self.vf_index, key, value, code, detail)
