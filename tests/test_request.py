"""A nic request (vfplugin/request.py): what one ``<vfp:nic>`` may say, and what vfplugin makes of it.

The same rules serve the domain XML and ``vfctl attach``; DESIGN.md section 3 is the contract.
"""

from __future__ import annotations

import pytest

from vfplugin.domxml import parse_domain
from vfplugin.errors import InvalidValue
from vfplugin.request import ATTRIBUTES, SELECTORS, NicRequest, metadata_fragment, parse_request

pytestmark = pytest.mark.pure


@pytest.mark.parametrize(
    ("selector", "raw", "value"),
    [
        ("pool", "fast", "fast"),
        ("model", " I350 Ethernet Controller Virtual Function ", "I350 Ethernet Controller Virtual Function"),
        ("pf", "eth2", "eth2"),
        ("vf", "0000:0A:00.2", "0000:0a:00.2"),
        ("vf", "0a:00.2", "0000:0a:00.2"),
    ],
)
def test_each_selector_is_parsed_and_normalized(selector: str, raw: str, value: str) -> None:
    nic = parse_request({"id": "net0", selector: raw})
    assert (nic.id, nic.selector, nic.value) == ("net0", selector, value)
    assert nic.describe() == f"{selector}={value}"


def test_options_default_to_unset() -> None:
    nic = parse_request({"id": "net0", "pool": "fast"})
    assert nic == NicRequest(id="net0", selector="pool", value="fast")
    assert nic.vf_settings() == {}


def test_every_option_of_the_design_is_read() -> None:
    nic = parse_request(
        {
            "id": "net0", "pool": "fast", "mac": "52:54:00:AB:CD:EF", "vlan": "100", "qos": "5",
            "trust": "on", "spoofchk": "off", "link_state": "disable", "min_tx_rate": "10",
            "max_tx_rate": "1000",
        }
    )
    assert nic.mac == "52:54:00:ab:cd:ef"
    assert (nic.vlan, nic.qos) == (100, 5)
    assert (nic.trust, nic.spoofchk, nic.link_state) == (True, False, "disable")
    assert (nic.min_tx_rate, nic.max_tx_rate) == (10, 1000)


def test_vf_settings_leave_mac_and_vlan_to_libvirt() -> None:
    nic = parse_request({"id": "n", "pool": "p", "mac": "52:54:00:00:00:01", "vlan": "7", "trust": "yes",
                         "max_tx_rate": "100"})
    assert nic.vf_settings() == {"trust": True, "max_tx_rate": 100}


@pytest.mark.parametrize(("text", "value"), [("on", True), ("YES", True), ("true", True), ("off", False),
                                             ("No", False), (" false ", False)])
def test_on_off_spellings(text: str, value: bool) -> None:
    assert parse_request({"id": "n", "pool": "p", "spoofchk": text}).spoofchk is value


def test_the_alias_ties_the_interface_to_the_request() -> None:
    assert parse_request({"id": "net-0_a", "pool": "p"}).alias == "ua-vfplugin-net-0_a"


def test_attributes_round_trip_through_parse_request() -> None:
    attrs = {"id": "net3", "vf": "0a:00.6", "mac": "52:54:00:12:34:56", "vlan": "4094", "qos": "0",
             "trust": "off", "link_state": "auto", "min_tx_rate": "0", "max_tx_rate": "400000"}
    nic = parse_request(attrs)
    again = parse_request(nic.attributes())
    assert again == nic
    assert nic.attributes() == {**attrs, "vf": "0000:0a:00.6"}


def test_every_selector_and_option_is_a_known_attribute() -> None:
    assert set(SELECTORS) <= set(ATTRIBUTES)
    assert "id" in ATTRIBUTES and len(set(ATTRIBUTES)) == len(ATTRIBUTES)


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"pool": "fast"}, "nic id None is invalid"),
        ({"id": "", "pool": "fast"}, "nic id '' is invalid"),
        ({"id": "a" * 33, "pool": "fast"}, "nic id"),
        ({"id": "net 0", "pool": "fast"}, "nic id 'net 0'"),
        ({"id": "net0"}, "give exactly one selector"),
        ({"id": "net0", "pool": "a", "vf": "0a:00.2"}, "'pool,vf' is invalid: give exactly one selector"),
        ({"id": "net0", "switch": "x"}, "nic attribute 'switch' is invalid: unknown"),
        ({"id": "net0", "pool": "fast", "vlan": "5000"}, "VLAN '5000' is invalid: must be 1-4094"),
        ({"id": "net0", "pool": "fast", "vlan": "0"}, "VLAN '0' is invalid"),
        ({"id": "net0", "pool": "fast", "vlan": "ten"}, "VLAN 'ten' is invalid: expected an integer"),
        ({"id": "net0", "pool": "fast", "vlan": "10", "qos": "8"}, "qos '8' is invalid: must be 0-7"),
        ({"id": "net0", "pool": "fast", "qos": "3"}, "a qos priority needs a vlan"),
        ({"id": "net0", "pool": "fast", "mac": "52:54:00:12:34"}, "MAC address '52:54:00:12:34' is invalid"),
        ({"id": "net0", "pool": "fast", "mac": "03:00:00:00:00:01"}, "multicast"),
        ({"id": "net0", "pool": "fast", "mac": "00:00:00:00:00:00"}, "all-zero"),
        ({"id": "net0", "pool": "fast", "trust": "maybe"}, "trust 'maybe' is invalid: expected on or off"),
        ({"id": "net0", "pool": "fast", "link_state": "up"}, "expected auto, enable or disable"),
        ({"id": "net0", "pool": "fast", "max_tx_rate": "-1"}, "max_tx_rate '-1' is invalid"),
        ({"id": "net0", "pool": "fast", "min_tx_rate": "100", "max_tx_rate": "10"}, "above max_tx_rate"),
        ({"id": "net0", "vf": "0000:0a:20.0"}, "slot above 0x1f"),
        ({"id": "net0", "vf": "eth2"}, "PCI address 'eth2' is invalid"),
        ({"id": "net0", "pf": "a/b"}, "PF name 'a/b' is invalid"),
        ({"id": "net0", "pf": "a" * 16}, "PF name"),
        ({"id": "net0", "pool": "fast pool"}, "pool name 'fast pool' is invalid"),
        ({"id": "net0", "model": "  "}, "is invalid: expected a model name as `vfctl list` shows it"),
        # found by test_validation_properties: accepted, then written by vfctl attach as XML nothing can read
        ({"id": "net0", "model": "I350\x1b"}, "is invalid: expected a model name as `vfctl list` shows it"),
    ],
)
def test_bad_requests_are_refused_naming_the_attribute(attrs: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidValue) as info:
        parse_request(attrs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_max_tx_rate_zero_means_unlimited_so_any_min_is_accepted() -> None:
    nic = parse_request({"id": "n", "pool": "p", "min_tx_rate": "100", "max_tx_rate": "0"})
    assert (nic.min_tx_rate, nic.max_tx_rate) == (100, 0)


def test_metadata_fragment_is_read_back_as_the_same_requests_once_libvirt_binds_it() -> None:
    nics = [
        parse_request({"id": "net0", "pool": "fast", "vlan": "100", "qos": "2", "trust": "on"}),
        parse_request({"id": "net1", "model": 'Odd "model" <&> \'name\'', "mac": "52:54:00:12:34:56"}),
        parse_request({"id": "net2", "vf": "0a:00.2", "link_state": "disable", "max_tx_rate": "0"}),
    ]
    # setMetadata binds every element of the naked fragment to the namespace it is given, as a default
    # namespace declaration on the root does
    bound = metadata_fragment(nics).replace("<nics>", '<nics xmlns="urn:vfplugin:1">', 1)
    domain = parse_domain(f"<domain><name>d</name><metadata>{bound}</metadata></domain>")
    assert list(domain.requests()) == nics
    assert metadata_fragment([]) == "<nics></nics>"


def test_a_requests_options_are_its_fields_after_the_selector_in_order():
    from vfplugin.request import _OPTIONS, NicRequest

    assert NicRequest._fields == ("id", "selector", "value", *_OPTIONS)
