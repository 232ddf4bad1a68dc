"""VF settings through the PF over rtnetlink (pyroute2): read them, apply them, put them back.

This is the only module that imports pyroute2, and it does so inside functions: importing pyroute2 costs
100-150 ms, and the hook must not pay that for a domain that asks for no setting. Settings use the request's
words (``trust``, ``spoofchk``, ``link_state``, ``min_tx_rate``, ``max_tx_rate``, ``mac``, ``vlan``/``qos``).
``apply`` sets them one at a time, so a refusal names the setting; on a refusal it puts back what it had
already changed before raising, so nothing is left half-configured. It never touches what it was not asked to.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from .errors import NetdevMissing, VfSettingRefused
from .log import LOG
from .request import LINK_STATES

TYPE_CHECKING = False  # typing.TYPE_CHECKING would import typing (see hook.py)
if TYPE_CHECKING:
    from typing import Any

_LINK_STATE_NAMES = {v: k for k, v in LINK_STATES.items()}
# Apply order: rates and link state before trust/spoofchk is arbitrary but fixed, so rollback is its reverse.
ORDER = ("mac", "vlan", "spoofchk", "trust", "link_state", "min_tx_rate", "max_tx_rate")


@contextmanager
def _ipr() -> Iterator[Any]:
    from pyroute2 import IPRoute  # lazy: see the module docstring

    ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _pf_index(ipr: Any, pf: str, vf_index: int, what: str) -> int:
    found = ipr.link_lookup(ifname=pf)
    if not found:
        raise NetdevMissing(settings=what, vf_index=vf_index, pf=pf)
    return int(found[0])


def read(pf: str, vf_index: int) -> dict[str, Any]:
    """The VF's current settings as the PF reports them (IFLA_VFINFO_LIST), in the request's words."""
    with _ipr() as ipr:
        return _read(ipr, _pf_index(ipr, pf, vf_index, "(read)"), pf, vf_index)


def _read(ipr: Any, index: int, pf: str, vf_index: int) -> dict[str, Any]:
    link = ipr.get_links(index, ext_mask=1)[0]  # RTEXT_FILTER_VF: without it the kernel omits VF info
    vfinfo = link.get_attr("IFLA_VFINFO_LIST")
    for info in vfinfo.get_attrs("IFLA_VF_INFO") if vfinfo else ():
        attrs = dict(info["attrs"])
        if attrs.get("IFLA_VF_MAC", {}).get("vf") != vf_index:
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
    raise VfSettingRefused(
        pf=pf,
        setting="(read)",
        value="-",
        vf_index=vf_index,
        reason="the PF reports no such VF (sriov_numvfs?)",
    )


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
    # IFLA_VF_RATE carries both rates: keep the other one as it is now.
    rate = {
        "min_tx_rate": int(current.get("min_tx_rate", 0)),
        "max_tx_rate": int(current.get("max_tx_rate", 0)),
    }
    rate[key] = int(value)
    return {"vf": vf_index, "rate": rate}


def _errno_name(code: int) -> str:
    # Linux gives ENOTSUP and EOPNOTSUPP one number and Python names it ENOTSUP; drivers return -EOPNOTSUPP.
    return "EOPNOTSUPP" if code == errno.EOPNOTSUPP else errno.errorcode.get(code, str(code))


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return f"{value[0]}/qos {value[1]}"
    return str(value)


def _set(ipr: Any, index: int, pf: str, vf_index: int, key: str, value: Any, current: dict[str, Any]) -> None:
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        ipr.link("set", index=index, vf=_vf_message(vf_index, key, value, current))
    except NetlinkError as e:
        code = e.code or errno.EIO
        raise VfSettingRefused(
            pf=pf,
            setting=key,
            value=_shown(value),
            vf_index=vf_index,
            reason=f"{_errno_name(code)} ({os.strerror(code)})",
        ) from None
    if key in ("min_tx_rate", "max_tx_rate"):
        current[key] = int(value)


def _normalized(settings: Mapping[str, Any]) -> list[tuple[str, Any]]:
    wanted = dict(settings)
    if "qos" in wanted:  # qos only exists together with a VLAN
        wanted["vlan"] = (wanted["vlan"], wanted.pop("qos"))
    return [(k, wanted[k]) for k in ORDER if k in wanted]


def apply(pf: str, vf_index: int, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Set ``settings`` on VF ``vf_index`` of ``pf``; return the previous values of what was changed.

    All or nothing: if the driver refuses one setting, the ones already set are put back and
    VfSettingRefused (one line: setting, PF, errno) is raised.
    """
    if not settings:
        return {}
    with _ipr() as ipr:
        index = _pf_index(ipr, pf, vf_index, ", ".join(f"{k}={_shown(v)}" for k, v in _normalized(settings)))
        current = _read(ipr, index, pf, vf_index)
        previous: dict[str, Any] = {}
        try:
            for key, value in _normalized(settings):
                old = (current.get("vlan", 0), current.get("qos", 0)) if key == "vlan" else current.get(key)
                _set(ipr, index, pf, vf_index, key, value, current)
                if old is not None:
                    previous[key] = old
        except VfSettingRefused:
            for problem in _put_back(ipr, index, pf, vf_index, previous, current):
                LOG.warning("rollback after a refused setting: %s", problem)
            raise
        # Report vlan/qos back in the request's flat words, so the ledger can store it as JSON.
        if "vlan" in previous:
            previous["vlan"], previous["qos"] = previous["vlan"]
        return previous


def _put_back(
    ipr: Any, index: int, pf: str, vf_index: int, saved: Mapping[str, Any], current: dict[str, Any]
) -> list[str]:
    problems = []
    for key, value in reversed(_normalized(saved)):
        try:
            _set(ipr, index, pf, vf_index, key, value, current)
        except VfSettingRefused as e:
            problems.append(str(e))
    return problems


def restore(pf: str, vf_index: int, saved: Mapping[str, Any]) -> list[str]:
    """Put back settings saved by ``apply``. Best effort: returns one line per setting that failed."""
    if not saved:
        return []
    try:
        with _ipr() as ipr:
            index = _pf_index(ipr, pf, vf_index, "saved settings")
            current = _read(ipr, index, pf, vf_index)
            return _put_back(ipr, index, pf, vf_index, saved, current)
    except (VfSettingRefused, NetdevMissing) as e:
        return [str(e)]
