"""Value types: PCI addresses, MACs, VLANs, names are parsed once and refused with a one-line reason."""

from __future__ import annotations

import pytest

from vfplugin.addresses import (
    PciAddress,
    canonical_uuid,
    parse_ifname,
    parse_int,
    parse_mac,
    parse_mac_prefix,
    parse_name,
    parse_nic_id,
    parse_vlan,
)
from vfplugin.errors import InvalidValue

pytestmark = pytest.mark.pure


def test_pci_address_round_trips_in_sysfs_form() -> None:
    address = PciAddress.parse("0000:0a:10.4")
    assert address == PciAddress(0, 0x0A, 0x10, 4)
    assert str(address) == "0000:0a:10.4"


def test_pci_address_without_domain_and_in_upper_case() -> None:
    assert str(PciAddress.parse("3B:00.2")) == "0000:3b:00.2"


def test_pci_addresses_sort_by_bus_slot_function() -> None:
    addresses = [PciAddress.parse(a) for a in ("0000:3b:00.2", "0000:0a:11.0", "0000:0a:10.4")]
    assert [str(a) for a in sorted(addresses)] == ["0000:0a:10.4", "0000:0a:11.0", "0000:3b:00.2"]


@pytest.mark.parametrize(
    "text", ["", "0a:10", "0000:0a:10.8", "0000:0a:20.0", "0000:0g:10.0", "pci_0000_0a_10_0", 5]
)
def test_bad_pci_addresses_are_refused(text: object) -> None:
    with pytest.raises(InvalidValue) as info:
        PciAddress.parse(text)  # type: ignore[arg-type]
    assert str(info.value).startswith("PCI address ") and "\n" not in str(info.value)


def test_pci_address_to_and_from_libvirt_attributes() -> None:
    address = PciAddress.parse("0000:3b:00.5")
    attrs = address.libvirt_attrs()
    assert attrs == {"type": "pci", "domain": "0x0000", "bus": "0x3b", "slot": "0x00", "function": "0x5"}
    assert PciAddress.from_libvirt(attrs) == address
    # libvirt also accepts decimal numbers in these attributes
    assert PciAddress.from_libvirt({"bus": "59", "slot": "0", "function": "5"}) == address


def test_libvirt_attributes_that_are_not_numbers_are_refused() -> None:
    with pytest.raises(InvalidValue):
        PciAddress.from_libvirt({"bus": "0xzz"})


@pytest.mark.parametrize("attrs", [{"domain": "-1"}, {"bus": "0x100"}, {"slot": "0x20"}, {"function": "8"}])
def test_libvirt_attributes_out_of_range_are_refused(attrs: dict[str, str]) -> None:
    # found by test_validation_properties: domain='-1' became "-001:00:00.0", which nothing parses back
    with pytest.raises(InvalidValue, match="out of range"):
        PciAddress.from_libvirt(attrs)


def test_mac_is_normalised_and_must_be_unicast() -> None:
    assert parse_mac("52:54:00:AB:CD:EF") == "52:54:00:ab:cd:ef"
    for bad in ("01:00:5e:00:00:01", "00:00:00:00:00:00", "52:54:00:ab:cd", "52-54-00-ab-cd-ef"):
        with pytest.raises(InvalidValue):
            parse_mac(bad)


def test_mac_prefix_has_one_to_five_unicast_octets() -> None:
    assert parse_mac_prefix("52:54:00") == "52:54:00"
    assert parse_mac_prefix("02") == "02"
    for bad in ("", "53", "52:54:00:00:00:00", "5:54"):
        with pytest.raises(InvalidValue):
            parse_mac_prefix(bad)


def test_vlan_is_1_to_4094() -> None:
    assert parse_vlan("100") == 100 and parse_vlan(4094) == 4094
    for bad in ("0", 4095, "ten", True, "1.5"):
        with pytest.raises(InvalidValue):
            parse_vlan(bad)


@pytest.mark.parametrize("text", ["1_0", "\u0663", "１０", "0x10", "+", "", " "])
def test_an_integer_is_ascii_digits(text: str) -> None:
    # found by test_validation_properties: int() took vlan="1_0" as 10 and "\u0663" (Arabic-Indic three) as 3
    with pytest.raises(InvalidValue, match="expected an integer 1-4094"):
        parse_int(text, "VLAN", 1, 4094)


def test_int_range_is_inclusive() -> None:
    assert parse_int(" 7 ", "qos", 0, 7) == 7
    with pytest.raises(InvalidValue) as info:
        parse_int("8", "qos", 0, 7)
    assert str(info.value) == "qos '8' is invalid: must be 0-7"


def test_netdev_names_follow_the_kernel_rules() -> None:
    assert parse_ifname("enp59s0f0v0") == "enp59s0f0v0"
    for bad in ("", "a" * 16, "eth 2", "eth/2", ".", "..", None):
        with pytest.raises(InvalidValue):
            parse_ifname(bad)


def test_nic_ids_are_libvirt_alias_safe() -> None:
    assert parse_nic_id("net-0_a") == "net-0_a"
    for bad in ("net.0", "net:0", "", "x" * 33):
        with pytest.raises(InvalidValue):
            parse_nic_id(bad)


def test_names_allow_dots_and_colons_but_not_spaces() -> None:
    assert parse_name("pool.fast:1") == "pool.fast:1"
    with pytest.raises(InvalidValue):
        parse_name("fast pool")


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_ifname, "eth2\n"),
        (parse_name, "fast\n"),
        (parse_nic_id, "net0\n"),
        (parse_mac, "52:54:00:12:34:56\n"),
        (PciAddress.parse, "0000:0a:10.4x"),
        (parse_ifname, "eth\u0662"),  # an Arabic-Indic digit: str.isalnum() says yes, the kernel says no
    ],
)
def test_a_trailing_newline_or_a_non_ascii_character_is_refused(parse, text) -> None:
    with pytest.raises(InvalidValue):
        parse(text)


@pytest.mark.parametrize("spelling", [
    "6f2d3c1e-8a4b-4c2d-9e1f-0a1b2c3d4e5f", "6F2D3C1E-8A4B-4C2D-9E1F-0A1B2C3D4E5F",
    "6f2d3c1e8a4b4c2d9e1f0a1b2c3d4e5f", "6f2d-3c1e-8a4b-4c2d-9e1f-0a1b-2c3d-4e5f",
])
def test_a_uuid_has_one_name_whatever_its_spelling(spelling):
    assert canonical_uuid(spelling) == "6f2d3c1e-8a4b-4c2d-9e1f-0a1b2c3d4e5f"


@pytest.mark.parametrize("text", [
    "", "web1", "6f2d3c1e-8a4b-4c2d-9e1f-0a1b2c3d4e5", "6f2d3c1e-8a4b-4c2d-9e1f-0a1b2c3d4e5g",
    "{6f2d3c1e-8a4b-4c2d-9e1f-0a1b2c3d4e5f}", "6f2d3c1e 8a4b 4c2d 9e1f 0a1b2c3d4e5f",
])
def test_anything_else_is_not_a_uuid(text):
    with pytest.raises(ValueError, match="is not a UUID"):
        canonical_uuid(text)

