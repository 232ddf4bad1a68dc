"""Model names from pci.ids: brackets win, unknown devices show their ids, lookups stay within a vendor."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import FIXTURES, require
from vfplugin.pciids import DEFAULT_PATHS, PciIds, model_name

pytestmark = pytest.mark.pure

EXCERPT = FIXTURES / "pci.ids"


@pytest.fixture
def ids() -> PciIds:
    return PciIds(EXCERPT)


def test_bracketed_text_is_the_model(ids: PciIds) -> None:
    assert ids.device("15b3", "1018") == "MT27800 Family [ConnectX-5 Virtual Function]"
    assert ids.model("15b3", "1018") == "ConnectX-5 Virtual Function"
    assert ids.model("15b3", "1017") == "ConnectX-5"


def test_without_brackets_the_whole_name_is_the_model(ids: PciIds) -> None:
    assert ids.model("8086", "1520") == "I350 Ethernet Controller Virtual Function"
    assert ids.model("8086", "10ca") == "82576 Virtual Function"
    assert ids.model("8086", "154c") == "Ethernet Virtual Function 700 Series"
    assert ids.model("8086", "1889") == "Ethernet Adaptive Virtual Function"


def test_unknown_device_or_vendor_shows_its_ids(ids: PciIds) -> None:
    assert ids.model("8086", "ffff") == "8086:ffff"
    assert ids.model("abcd", "1018") == "abcd:1018"
    assert ids.model("????", "1018") == "????:1018"


def test_ids_are_matched_case_insensitively(ids: PciIds) -> None:
    assert ids.model("15B3", "101A") == "ConnectX-5 Ex Virtual Function"


def test_a_device_id_of_another_vendor_is_not_taken(ids: PciIds) -> None:
    # 1d6c (Atomic Rules) also has devices 1017/1018, after Mellanox's; the excerpt has no 8086:1018.
    assert ids.model("1d6c", "1018") == "Arkville 64B Multi-Homed Secondary Endpoint"
    assert ids.device("8086", "1018") is None


def test_subsystem_lines_are_not_devices(ids: PciIds) -> None:
    # "\t\t15b3 0007  Mellanox ConnectX-5 MCX516A-CCAT" is a subsystem of 15b3:1017, not device 0007.
    assert ids.device("15b3", "0007") is None


def test_vendor_names(ids: PciIds) -> None:
    assert ids.vendor("15b3") == "Mellanox Technologies"
    assert ids.vendor("8086") == "Intel Corporation"
    assert ids.vendor("0001") == "SafeNet (wrong ID)"
    assert ids.vendor("dead") is None


def test_last_vendor_block_ends_at_the_class_section(ids: PciIds) -> None:
    # "C 02  Network controller" follows vendor 8088; its "\t00  Ethernet controller" is not an 8088 device.
    assert ids.device("8088", "0000") is None


def test_missing_file_means_everything_is_unknown(tmp_path: Path) -> None:
    ids = PciIds(tmp_path / "absent.ids")
    assert ids.model("15b3", "1018") == "15b3:1018"
    assert PciIds(candidates=(tmp_path / "a", tmp_path / "b")).model("8086", "1520") == "8086:1520"


def test_file_is_read_once_and_lookups_are_cached(tmp_path: Path) -> None:
    path = tmp_path / "pci.ids"
    path.write_bytes(EXCERPT.read_bytes())
    ids = PciIds(path)
    assert ids.model("15b3", "1018") == "ConnectX-5 Virtual Function"
    path.write_text("15b3  Someone\n\t1018  Something else [Other]\n")
    assert ids.model("15b3", "1018") == "ConnectX-5 Virtual Function"  # cached per (vendor, device)
    assert ids.model("8086", "1520") == "I350 Ethernet Controller Virtual Function"  # same bytes, read once


def test_a_vendor_on_the_first_line_is_found(tmp_path: Path) -> None:
    path = tmp_path / "pci.ids"
    path.write_text("15b3  Mellanox Technologies\n\t1018  MT27800 Family [ConnectX-5 Virtual Function]\n")
    assert PciIds(path).model("15b3", "1018") == "ConnectX-5 Virtual Function"


@pytest.mark.parametrize(
    "name, model",
    [
        ("MT27800 Family [ConnectX-5 Virtual Function]", "ConnectX-5 Virtual Function"),
        ("I350 Ethernet Controller Virtual Function", "I350 Ethernet Controller Virtual Function"),
        ("Foo [Bar] [Baz VF]", "Baz VF"),
        (None, "15b3:1018"),
        ("", "15b3:1018"),
    ],
)
def test_model_name_rule(name: object, model: str) -> None:
    assert model_name(name, "15b3", "1018") == model  # type: ignore[arg-type]


def test_against_the_hosts_pci_ids_when_present() -> None:
    real = next((p for p in DEFAULT_PATHS if p.is_file()), None)
    require(real is not None, "no pci.ids on this machine (Debian package pci.ids; ./run-tests installs it)")
    ids = PciIds(real)
    assert ids.model("15b3", "1018") == "ConnectX-5 Virtual Function"
    assert ids.model("8086", "1520") == "I350 Ethernet Controller Virtual Function"
    assert ids.model("8086", "10ca") == "82576 Virtual Function"
    assert ids.model("8086", "154c") == "Ethernet Virtual Function 700 Series"
    assert ids.model("8086", "1889") == "Ethernet Adaptive Virtual Function"
