"""configure(): the VF settings saved in the lease are the ones found before vfplugin changed anything.

netlink is replaced by a stand-in that records calls and plays a VF's state (no SR-IOV NIC here; the lab's
real igb covers the real netlink path); the ledger is a real SQLite file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vfplugin import configure as configure_module
from vfplugin import netlink
from vfplugin.addresses import PciAddress
from vfplugin.config import Config
from vfplugin.ledger import Ledger, Saved, Want
from vfplugin.plan import Holding
from vfplugin.request import parse_request
from vfplugin.sysfs import Sysfs

pytestmark = pytest.mark.sqlite

VF = "0000:0a:10.0"


class FakeVf:
    """One VF's settings as the PF would report and change them."""

    def __init__(self) -> None:
        self.state = {"trust": False, "spoofchk": True}

    def apply(self, pf: str, vf_index: int, settings: dict, via: str = "pyroute2") -> dict:
        previous = {k: self.state[k] for k in settings}
        self.state.update(settings)
        return previous

    def restore(self, pf: str, vf_index: int, saved: dict, via: str = "pyroute2") -> list:
        self.state.update(saved)
        return []


def test_a_second_prepare_keeps_the_settings_the_first_one_saved(tmp_path: Path, monkeypatch):
    fake = FakeVf()
    monkeypatch.setattr(netlink, "apply", fake.apply)
    monkeypatch.setattr(netlink, "restore", fake.restore)
    nic = parse_request({"id": "net0", "pool": "p", "trust": "on", "spoofchk": "off"})
    held = Holding(PciAddress.parse(VF), "eth2", 0, nic, "interface", None, None)
    with Ledger.open(tmp_path / "ledger.sqlite3", boot_id="b") as ledger:
        ledger.claim("u1", "web1", [Want(VF, "net0")])
        for _ in range(2):  # prepare, then prepare again after a crash: the VF already carries vfplugin's values
            configure_module.configure(Config(), Sysfs(tmp_path), ledger, "u1", "web1", held)
        saved = ledger.lease(VF).saved
        assert saved == Saved("eth2", 0, (("spoofchk", True), ("trust", False)))  # as configure built it
        assert configure_module.unconfigure(Config(), Sysfs(tmp_path), ledger.lease(VF), "eth2") == []
    assert fake.state == {"trust": False, "spoofchk": True}


def test_a_plugged_representor_is_kept_beside_the_saved_settings(tmp_path: Path, monkeypatch):
    """Settings and the OVS port in one Saved record, whichever prepare wrote which part; a second prepare
    (after a crash) keeps the original settings and records the port once."""
    fake = FakeVf()
    monkeypatch.setattr(netlink, "apply", fake.apply)
    monkeypatch.setattr(netlink, "restore", fake.restore)
    plugged: list[str] = []

    def plug(config, sysfs, uuid, name, h):  # type: ignore[no-untyped-def]
        plugged.append(h.vf)
        return "br-offload", "eth3_0"

    monkeypatch.setattr(configure_module, "plug", plug)
    nic = parse_request({"id": "net0", "pool": "p", "trust": "on"})
    held = Holding(PciAddress.parse(VF), "eth2", 0, nic, "interface", None, None)
    with Ledger.open(tmp_path / "ledger.sqlite3", boot_id="b") as ledger:
        ledger.claim("u1", "web1", [Want(VF, "net0")])
        for _ in range(2):
            configure_module.configure(Config(), Sysfs(tmp_path), ledger, "u1", "web1", held)
            assert ledger.lease(VF).saved == Saved(  # type: ignore[union-attr]
                "eth2", 0, (("trust", False),), "br-offload", "eth3_0")
    assert plugged == [VF, VF]
