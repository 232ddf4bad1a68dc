"""VF settings through iproute2 (vfplugin/iproute.py) and the contract netlink.py keeps over it.

The parsing of ``ip link show`` is checked on output captured in the lab (tests/data/iproute/, from
tests/lab/scenario: the emulated igb PF with a VF carrying libvirt's VLAN and vfplugin's trust/spoofchk/
max_tx_rate, and one with the hook's settings applied): the text the hooks parse must say what iproute2's JSON
of the same moment says, for every VF. The contract (rollback in
reverse, one request first then one setting per request) is checked with a transport that plays a VF; the real
``ip`` is run against ``lo`` (a netdev without VFs: nothing changes) for refusals and a missing netdev.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.conftest import require
from vfplugin import iproute, netlink
from vfplugin.errors import NetdevMissing, VfSettingRefused

DATA = Path(__file__).resolve().parent / "data" / "iproute"
CAPTURES = sorted(DATA.glob("*.json"))


def expected(vf: dict) -> dict:
    """What iproute2's JSON says of one VF, in the request's words (the JSON is the reference: named fields)."""
    vlan = (vf.get("vlan_list") or [{}])[0]
    state = {"mac": vf["address"], "vlan": vlan.get("vlan", 0), "qos": vlan.get("qos", 0),
             "link_state": vf["link_state"], "min_tx_rate": vf["rate"]["min_tx"], "max_tx_rate": vf["rate"]["max_tx"]}
    state.update({k: vf[k] for k in ("spoofchk", "trust") if k in vf})
    return state


@pytest.mark.pure
def test_the_lab_captures_are_checked_in():
    assert len(CAPTURES) >= 2, "run tests/lab/run and copy work/out/iproute/* to tests/data/iproute/"


@pytest.mark.pure
@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.stem)
def test_every_vf_of_a_captured_pf_reads_as_iproute2s_json_says(capture: Path):
    """The same moment in three forms (plain and -d text, which the hooks parse, and -j -d JSON)."""
    (link,) = json.loads(capture.read_text())
    vfs = link["vfinfo_list"]
    assert vfs, "the capture lists no VF"
    for form in (capture.with_suffix(".txt"), capture.with_suffix(".d.txt")):
        text = form.read_text()
        for vf in vfs:
            assert iproute.vf_settings(text, vf["vf"]) == expected(vf), f"{form.name}: vf {vf['vf']}"
        assert iproute.vf_settings(text, len(vfs) + 7) is None


@pytest.mark.pure
def test_a_vf_with_settings_reads_back_what_was_set():
    """The lab's l2a: libvirt's VLAN 100 and its MAC, vfplugin's trust on, spoofchk off, max_tx_rate 100."""
    (capture,) = [p for p in CAPTURES if "vlan-settings" in p.name]
    index = int(re.search(r"-vf(\d+)-", capture.name).group(1))
    state = iproute.vf_settings(capture.with_suffix(".txt").read_text(), index)
    assert state is not None
    assert {k: state[k] for k in ("vlan", "qos", "trust", "spoofchk", "max_tx_rate", "min_tx_rate")} == {
        "vlan": 100, "qos": 0, "trust": True, "spoofchk": False, "max_tx_rate": 100, "min_tx_rate": 0,
    }
    assert re.fullmatch(r"52:54:00(:[0-9a-f]{2}){3}", state["mac"])


@pytest.mark.pure
def test_a_vf_line_reads_in_the_requests_words():
    text = (
        "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP mode DEFAULT group default qlen 1000\n"
        "    link/ether 52:54:00:12:34:56 brd ff:ff:ff:ff:ff:ff\n"
        "    vf 0     link/ether 52:54:00:1a:b0:0d brd ff:ff:ff:ff:ff:ff, vlan 100, tx rate 100 (Mbps), "
        "max_tx_rate 100Mbps, spoof checking off, link-state auto, trust on, query_rss off\n"
        "    vf 1     link/ether 00:00:00:00:00:00 brd ff:ff:ff:ff:ff:ff, spoof checking on, link-state auto, "
        "trust off, query_rss off\n"
    )
    assert iproute.vf_settings(text, 0) == {
        "mac": "52:54:00:1a:b0:0d", "vlan": 100, "qos": 0, "min_tx_rate": 0, "max_tx_rate": 100,
        "spoofchk": False, "link_state": "auto", "trust": True,
    }
    assert iproute.vf_settings(text, 1) == {
        "mac": "00:00:00:00:00:00", "vlan": 0, "qos": 0, "min_tx_rate": 0, "max_tx_rate": 0,
        "spoofchk": True, "link_state": "auto", "trust": False,
    }
    assert iproute.vf_settings(text, 2) is None


@pytest.mark.pure
def test_a_value_the_driver_cannot_tell_is_left_out_not_guessed():
    text = "    vf 0     link/ether 00:00:00:00:00:00 brd ff:ff:ff:ff:ff:ff, vlan 7, qos 3, link-state auto\n"
    assert iproute.vf_settings(text, 0) == {
        "mac": "00:00:00:00:00:00", "vlan": 7, "qos": 3, "link_state": "auto", "min_tx_rate": 0, "max_tx_rate": 0,
    }


@pytest.mark.pure
def test_one_setting_per_ip_call_with_both_rates_together():
    base = ["/sbin/ip", "link", "set", "dev", "eth0", "vf", "3"]
    now = {"min_tx_rate": 10, "max_tx_rate": 0}
    assert iproute.set_argv("eth0", 3, "trust", True, now) == base + ["trust", "on"]
    assert iproute.set_argv("eth0", 3, "spoofchk", False, now) == base + ["spoofchk", "off"]
    assert iproute.set_argv("eth0", 3, "link_state", "disable", now) == base + ["state", "disable"]
    assert iproute.set_argv("eth0", 3, "vlan", (100, 2), now) == base + ["vlan", "100", "qos", "2"]
    assert iproute.set_argv("eth0", 3, "mac", "52:54:00:00:00:01", now) == base + ["mac", "52:54:00:00:00:01"]
    assert iproute.set_argv("eth0", 3, "max_tx_rate", 100, now) == base + ["min_tx_rate", "10", "max_tx_rate", "100"]
    # one request for all, rates alone (iproute2 reads the other one): what the hooks send in the common case
    line = iproute.set_all_line("eth0", 3, [("vlan", (100, 0)), ("trust", True), ("max_tx_rate", 100)])
    assert line == "link set dev eth0 vf 3 vlan 100 qos 0 trust on max_tx_rate 100"


@pytest.mark.pure
def test_ip_messages_map_back_to_the_errno():
    assert iproute.failure("RTNETLINK answers: Operation not supported\n") == (95, "")
    assert iproute.failure("RTNETLINK answers: Invalid argument\n") == (22, "")
    assert iproute.failure("Error: Device is busy.\n") == (0, "Error: Device is busy.")
    error = netlink.refused("eth0", 3, "link_state", "disable", 95)
    assert str(error).startswith("PF eth0 refused link_state=disable for VF 3: EOPNOTSUPP (Operation not supported)")


class Recorder:
    """A transport that plays one VF and refuses one setting, recording every call."""

    def __init__(self, refuse: str) -> None:
        self.state = {"mac": "00:00:00:00:00:00", "vlan": 0, "qos": 0, "trust": False, "spoofchk": True,
                      "link_state": "auto", "min_tx_rate": 0, "max_tx_rate": 0}
        self.refuse = refuse
        self.calls: list[tuple[str, object]] = []

    def read(self) -> dict:
        return dict(self.state)

    def set(self, key: str, value: object, current: dict) -> None:
        self.calls.append((key, value))
        if key == self.refuse:
            raise netlink.refused("eth0", 3, key, value, 95)
        self.state[key] = value

    def close(self) -> None:
        pass


@pytest.mark.pure
def test_a_refused_setting_puts_back_what_was_set_before_it_in_reverse(monkeypatch):
    vf = Recorder(refuse="link_state")
    monkeypatch.setattr(netlink, "_session", lambda via, pf, index, what: vf)
    with pytest.raises(VfSettingRefused, match="link_state=disable for VF 3: EOPNOTSUPP"):
        netlink.apply("eth0", 3, {"trust": True, "spoofchk": False, "link_state": "disable"}, via=netlink.IPROUTE2)
    assert vf.calls == [("spoofchk", False), ("trust", True), ("link_state", "disable"),
                        ("trust", False), ("spoofchk", True)]
    assert (vf.state["trust"], vf.state["spoofchk"]) == (False, True)


@pytest.mark.pure
def test_apply_returns_what_restore_puts_back(monkeypatch):
    vf = Recorder(refuse="")
    monkeypatch.setattr(netlink, "_session", lambda via, pf, index, what: vf)
    before = dict(vf.state)
    saved = netlink.apply("eth0", 3, {"trust": True, "max_tx_rate": 100}, via=netlink.IPROUTE2)
    assert saved == {"trust": False, "max_tx_rate": 0}
    assert netlink.restore("eth0", 3, saved, via=netlink.IPROUTE2) == []
    assert vf.state == before


@pytest.mark.hook
def test_real_ip_refusal_names_the_setting_and_errno_and_a_missing_pf_is_named():
    require(os.geteuid() == 0, "needs root (ip link set)")
    session = iproute.Session("lo", 0, "trust=on")
    with pytest.raises(VfSettingRefused, match=r"PF lo refused trust=on for VF 0: EOPNOTSUPP"):
        session.set("trust", True, {})
    with pytest.raises(VfSettingRefused, match="the PF reports no such VF"):
        session.read()
    with pytest.raises(NetdevMissing, match="no netdev vfp-nosuch0"):
        netlink.apply("vfp-nosuch0", 0, {"trust": True}, via=netlink.IPROUTE2)
    (problem,) = netlink.restore("vfp-nosuch0", 0, {"trust": False}, via=netlink.IPROUTE2)
    assert problem.startswith("cannot set saved settings on VF 0 of vfp-nosuch0: no netdev vfp-nosuch0")


class OneRequest(Recorder):
    """iproute2's way: the report and every setting in one request, which the kernel stops at a refusal."""

    def read_and_set_all(self, pairs: list) -> tuple[dict, bool]:
        before = dict(self.state)
        self.calls.append(("all", [k for k, _ in pairs]))
        for key, value in pairs:
            if key == self.refuse:
                return before, False
            self.state[key] = value
        return before, True

    def set_all(self, pairs: list) -> bool:
        self.calls.append(("all", [k for k, _ in pairs]))
        self.state.update(pairs)
        return True


@pytest.mark.pure
def test_one_request_in_the_common_case_and_one_setting_per_request_after_a_refusal(monkeypatch):
    vf = OneRequest(refuse="")
    monkeypatch.setattr(netlink, "_session", lambda via, pf, index, what: vf)
    saved = netlink.apply("eth0", 3, {"trust": True, "spoofchk": False}, via=netlink.IPROUTE2)
    assert vf.calls == [("all", ["spoofchk", "trust"])] and saved == {"trust": False, "spoofchk": True}
    assert netlink.restore("eth0", 3, saved, via=netlink.IPROUTE2) == []
    assert vf.calls[-1] == ("all", ["trust", "spoofchk"]) and (vf.state["trust"], vf.state["spoofchk"]) == (False, True)

    vf = OneRequest(refuse="link_state")
    monkeypatch.setattr(netlink, "_session", lambda via, pf, index, what: vf)
    with pytest.raises(VfSettingRefused, match="link_state=disable for VF 3: EOPNOTSUPP"):
        netlink.apply("eth0", 3, {"trust": True, "spoofchk": False, "link_state": "disable"}, via=netlink.IPROUTE2)
    assert vf.calls[0] == ("all", ["spoofchk", "trust", "link_state"])
    # what the request may have made is put back, then one setting at a time names the refusal and undoes
    assert vf.calls[1:4] == [("link_state", "auto"), ("trust", False), ("spoofchk", True)]
    assert vf.calls[4:] == [("spoofchk", False), ("trust", True), ("link_state", "disable"),
                            ("trust", False), ("spoofchk", True)]
    assert (vf.state["trust"], vf.state["spoofchk"], vf.state["link_state"]) == (False, True, "auto")
