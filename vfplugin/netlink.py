"""VF settings through the PF over rtnetlink: read them, apply them, put them back.

Settings use the request's words (``trust``, ``spoofchk``, ``link_state``, ``min_tx_rate``, ``max_tx_rate``,
``mac``, ``vlan``/``qos``). ``apply`` sets them one at a time, so a refusal names the setting and the errno; on
a refusal it puts back what it had already changed before raising, so nothing is left half-configured. It
never touches what it was not asked to. ``restore`` puts back what ``apply`` returned.

Two ways to speak rtnetlink, one contract (this module owns the order, the rollback and the messages):
- ``via="pyroute2"`` (the default): pyroute2 in the process. Importing it costs 250-290 ms (asyncio,
  multiprocessing, ndb...), paid once by a process that lives long enough: vfctl, the agent.
- ``via="iproute2"``: iproute2's ``ip`` (iproute.py), 2-3 ms a call. The hooks use it: they are a fresh process
  on every lifecycle event, three times per VM start and stop.
pyroute2 is imported here only, inside functions.
"""

from __future__ import annotations

import errno
import os

from .errors import NetdevMissing, VfSettingRefused
from .log import LOG
from .request import LINK_STATES

TYPE_CHECKING = False  # typing.TYPE_CHECKING would import typing (see hook.py)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

PYROUTE2 = "pyroute2"
IPROUTE2 = "iproute2"

_LINK_STATE_NAMES = {v: k for k, v in LINK_STATES.items()}
# Apply order: rates and link state before trust/spoofchk is arbitrary but fixed, so rollback is its reverse.
ORDER = ("mac", "vlan", "spoofchk", "trust", "link_state", "min_tx_rate", "max_tx_rate")


def _session(via: str, pf: str, vf_index: int, what: str) -> Any:
    """An open way to read and set one VF's settings: ``.read()``, ``.set(key, value, current)``, ``.close()``."""
    if via == IPROUTE2:
        from .iproute import Session

        return Session(pf, vf_index, what)
    if via == PYROUTE2:
        return _Pyroute2(pf, vf_index, what)
    raise ValueError(f"unknown rtnetlink transport {via!r}")


class _Pyroute2:
    """One VF of one PF through pyroute2's IPRoute (one netlink socket for the session)."""

    def __init__(self, pf: str, vf_index: int, what: str) -> None:
        from pyroute2 import IPRoute  # lazy: see the module docstring

        self.pf = pf
        self.vf_index = vf_index
        self.ipr = IPRoute()
        found = self.ipr.link_lookup(ifname=pf)
        if not found:
            self.ipr.close()
            raise NetdevMissing(settings=what, vf_index=vf_index, pf=pf)
        self.index = int(found[0])

    def close(self) -> None:
        self.ipr.close()

    def read(self) -> dict[str, Any]:
        link = self.ipr.get_links(self.index, ext_mask=1)[0]  # RTEXT_FILTER_VF: else the kernel omits VF info
        vfinfo = link.get_attr("IFLA_VFINFO_LIST")
        for info in vfinfo.get_attrs("IFLA_VF_INFO") if vfinfo else ():
            attrs = dict(info["attrs"])
            if attrs.get("IFLA_VF_MAC", {}).get("vf") != self.vf_index:
                continue
            state: dict[str, Any] = {"mac": attrs["IFLA_VF_MAC"]["mac"]}
            if "IFLA_VF_VLAN" in attrs:
                state["vlan"] = attrs["IFLA_VF_VLAN"]["vlan"]
                state["qos"] = attrs["IFLA_VF_VLAN"]["qos"]
            for key, nla in (("spoofchk", "IFLA_VF_SPOOFCHK"), ("trust", "IFLA_VF_TRUST")):
                value = attrs.get(nla, {}).get(key)
                # The kernel reports -1 (as u32) when the driver cannot tell; such a value is not restorable.
                if value in (0, 1):
                    state[key] = bool(value)
            if "IFLA_VF_LINK_STATE" in attrs:
                state["link_state"] = _LINK_STATE_NAMES.get(attrs["IFLA_VF_LINK_STATE"]["link_state"], "auto")
            if "IFLA_VF_RATE" in attrs:
                state["min_tx_rate"] = attrs["IFLA_VF_RATE"]["min_tx_rate"]
                state["max_tx_rate"] = attrs["IFLA_VF_RATE"]["max_tx_rate"]
            return state
        raise no_such_vf(self.pf, self.vf_index)

    def set(self, key: str, value: Any, current: Mapping[str, Any]) -> None:
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            self.ipr.link("set", index=self.index, vf=_vf_message(self.vf_index, key, value, current))
        except NetlinkError as e:
            raise refused(self.pf, self.vf_index, key, value, e.code or errno.EIO) from None


def _vf_message(vf_index: int, key: str, value: Any, current: Mapping[str, Any]) -> dict[str, Any]:
    """A fresh ``vf={...}`` dict for one setting (pyroute2 pops keys from the dict it is given)."""
    if key == "mac":
        return {"vf": vf_index, "mac": value}
    if key == "vlan":  # a flat "qos" key is silently ignored by pyroute2: qos travels inside the vlan dict
        vlan, qos = value if isinstance(value, tuple) else (value, 0)
        return {"vf": vf_index, "vlan": {"vlan": vlan, "qos": qos}}
    if key in ("spoofchk", "trust"):
        return {"vf": vf_index, key: int(bool(value))}
    if key == "link_state":
        return {"vf": vf_index, "link_state": LINK_STATES[value]}
    return {"vf": vf_index, "rate": rates(key, value, current)}


def rates(key: str, value: Any, current: Mapping[str, Any]) -> dict[str, int]:
    """Both rates for setting one of them: IFLA_VF_RATE carries both, so the other one stays as it is now."""
    both = {
        "min_tx_rate": int(current.get("min_tx_rate", 0)),
        "max_tx_rate": int(current.get("max_tx_rate", 0)),
    }
    both[key] = int(value)
    return both


def errno_name(code: int) -> str:
    # Linux gives ENOTSUP and EOPNOTSUPP one number and Python names it ENOTSUP; drivers return -EOPNOTSUPP.
    return "EOPNOTSUPP" if code == errno.EOPNOTSUPP else errno.errorcode.get(code, str(code))


def shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return f"{value[0]}/qos {value[1]}"
    return str(value)


def refused(pf: str, vf_index: int, key: str, value: Any, code: int, detail: str = "") -> VfSettingRefused:
    """The one-line refusal: setting, PF, VF, errno name (``detail`` when the kernel said more or no errno)."""
    reason = f"{errno_name(code)} ({os.strerror(code)})" if code else detail
    if code and detail:
        reason += f": {detail}"
    return VfSettingRefused(pf=pf, setting=key, value=shown(value), vf_index=vf_index, reason=reason)


def no_such_vf(pf: str, vf_index: int) -> VfSettingRefused:
    return VfSettingRefused(
        pf=pf, setting="(read)", value="-", vf_index=vf_index, reason="the PF reports no such VF (sriov_numvfs?)"
    )


def _normalized(settings: Mapping[str, Any]) -> list[tuple[str, Any]]:
    wanted = dict(settings)
    if "qos" in wanted:  # qos only exists together with a VLAN
        wanted["vlan"] = (wanted["vlan"], wanted.pop("qos"))
    return [(k, wanted[k]) for k in ORDER if k in wanted]


def _set(session: Any, key: str, value: Any, current: dict[str, Any]) -> None:
    session.set(key, value, current)
    if key in ("min_tx_rate", "max_tx_rate"):
        current[key] = int(value)


def read(pf: str, vf_index: int, via: str = PYROUTE2) -> dict[str, Any]:
    """The VF's current settings as the PF reports them (IFLA_VFINFO_LIST), in the request's words."""
    session = _session(via, pf, vf_index, "(read)")
    try:
        return dict(session.read())
    finally:
        session.close()


def apply(pf: str, vf_index: int, settings: Mapping[str, Any], via: str = PYROUTE2) -> dict[str, Any]:
    """Set ``settings`` on VF ``vf_index`` of ``pf``; return the previous values of what was changed.

    All or nothing: if the driver refuses one setting, the ones already set are put back and
    VfSettingRefused (one line: setting, PF, errno) is raised.
    """
    if not settings:
        return {}
    pairs = _normalized(settings)
    session = _session(via, pf, vf_index, ", ".join(f"{k}={shown(v)}" for k, v in pairs))
    try:
        fast = getattr(session, "read_and_set_all", None)  # iproute2: the report and every setting, one ip
        if fast is not None:
            before, made = fast(pairs)
            previous = _previous(pairs, before)
            if made:
                return _flat(previous)
            # One request with every setting failed and may have made some: put back all it asked for, then one
            # setting at a time below, so the refusal names its setting and errno and what was set is undone.
            for problem in _put_back(session, previous, dict(before)):
                LOG.warning("rollback after a refused setting: %s", problem)
        current = dict(session.read())
        previous = {}
        try:
            for key, value in pairs:
                old = _previous([(key, value)], current)
                _set(session, key, value, current)
                previous.update(old)
        except VfSettingRefused:
            for problem in _put_back(session, _flat(previous), current):
                LOG.warning("rollback after a refused setting: %s", problem)
            raise
    finally:
        session.close()
    return _flat(previous)


def _previous(pairs: Sequence[tuple[str, Any]], current: Mapping[str, Any]) -> dict[str, Any]:
    """What the VF had for each setting of ``pairs`` (vlan as a (vlan, qos) pair); a value the PF does not
    report (-1: the driver cannot tell) is left out, as it cannot be put back."""
    previous: dict[str, Any] = {}
    for key, _ in pairs:
        old = (current.get("vlan", 0), current.get("qos", 0)) if key == "vlan" else current.get(key)
        if old is not None:
            previous[key] = old
    return previous


def _flat(previous: dict[str, Any]) -> dict[str, Any]:
    """vlan/qos back in the request's flat words, so the ledger can store them as JSON."""
    if isinstance(previous.get("vlan"), tuple):
        previous["vlan"], previous["qos"] = previous["vlan"]
    return previous


def _put_back(session: Any, saved: Mapping[str, Any], current: dict[str, Any]) -> list[str]:
    problems = []
    for key, value in reversed(_normalized(saved)):
        try:
            _set(session, key, value, current)
        except VfSettingRefused as e:
            problems.append(str(e))
    return problems


def restore(pf: str, vf_index: int, saved: Mapping[str, Any], via: str = PYROUTE2) -> list[str]:
    """Put back settings saved by ``apply``. Best effort: returns one line per setting that failed."""
    if not saved:
        return []
    try:
        session = _session(via, pf, vf_index, "saved settings")
        try:
            fast = getattr(session, "set_all", None)  # iproute2: every saved setting in one ip
            if fast is not None and fast(list(reversed(_normalized(saved)))):
                return []
            return _put_back(session, saved, dict(session.read()))
        finally:
            session.close()
    except (VfSettingRefused, NetdevMissing) as e:
        return [str(e)]
