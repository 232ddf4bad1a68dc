"""Validation, generated: every configuration document, nic request and address is either accepted and comes
back equal from its own written form, or refused with one line: the right VfpluginError subclass naming the key
or attribute at fault (never a traceback, never a second line)."""

from __future__ import annotations

import string
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import yaml
from hypothesis import assume, given
from hypothesis import strategies as st

from vfplugin.addresses import PciAddress, parse_int, parse_mac, parse_mac_prefix
from vfplugin.config import Config, parse
from vfplugin.errors import ConfigError, InvalidValue, VfpluginError
from vfplugin.request import ATTRIBUTES, SELECTORS, NicRequest, metadata_fragment, parse_request

pytestmark = pytest.mark.pure


def one_line(error: VfpluginError) -> str:
    text = str(error)
    assert text and len(text.splitlines()) == 1 and text == text.strip(), repr(text)
    assert "Traceback" not in text
    return text


# --- values, valid and not -----------------------------------------------------------------------------------

IFNAME = st.text(string.ascii_letters + string.digits + "_.:@-", min_size=1, max_size=15).filter(
    lambda s: s not in (".", ".."))
NAME = st.text(string.ascii_letters + string.digits + "_.+:-", min_size=1, max_size=64)
NIC_ID = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=32)
OCTET = st.integers(0, 255).map(lambda n: f"{n:02x}")
UNICAST = st.integers(0, 127).map(lambda n: f"{2 * n:02x}")
MAC = st.tuples(UNICAST, *[OCTET] * 5).map(":".join).filter(lambda m: m != "00:00:00:00:00:00")
MAC_PREFIX = st.builds(lambda first, rest: ":".join([first, *rest]), UNICAST, st.lists(OCTET, max_size=4))
PCI = st.builds(PciAddress, st.integers(0, 0xFFFF), st.integers(0, 0xFF), st.integers(0, 0x1F), st.integers(0, 7))
MODEL = st.text(st.characters(whitelist_categories=("L", "N", "P", "S", "Zs")), min_size=1, max_size=40).filter(
    lambda s: s.strip() and s.strip().isprintable())
ONOFF = st.sampled_from(["on", "off", "yes", "no", "true", "false", "ON", " off "])
# anything a YAML document or an XML attribute could hold
JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5) | st.integers(), inner,
                                                                max_size=3),
    max_leaves=6,
)
TEXT = st.text(max_size=20) | st.sampled_from(["", " ", "0", "-1", "4095", "1_0", "٣", "0a:10.0", "eth0\n"])


# --- configuration -------------------------------------------------------------------------------------------


def document(config: Config) -> dict[str, Any]:
    """The YAML document a person would write for ``config``."""
    return {
        "sriov_nics": list(config.sriov_nics),
        "ovs_offload_nics": list(config.ovs_offload_nics),
        "networks": [f"{n.ifname}/{n.bridge}/{n.address}" for n in config.networks],
        "pools": {p.name: {"pfs": list(p.pfs), **({"model": p.model} if p.model is not None else {})}
                  for p in config.pools},
        "ledger": config.ledger,
        "mac_prefix": config.mac_prefix,
        "reservation_ttl": config.reservation_ttl,
        "sysfs_root": config.sysfs_root,
        # host state, when the configuration has it: PF -> value
        **{key: dict(getattr(config, key)) for key in ("vfs", "eswitch") if getattr(config, key, ())},
    }


KEYS = sorted(document(Config()))
POOL_KEYS = st.sampled_from(["pfs", "model", "x"]) | st.integers(0, 3)  # YAML keys may be numbers
POOLS = st.dictionaries(NAME | st.integers(), st.dictionaries(POOL_KEYS, JUNK, max_size=3), max_size=2)


@st.composite
def config_documents(draw: st.DrawFn) -> dict[str, Any]:
    sriov = draw(st.lists(IFNAME, max_size=3, unique=True))
    offload = draw(st.lists(IFNAME, max_size=2, unique=True))
    managed = sorted(set(sriov) | set(offload))
    doc: dict[str, Any] = {
        "sriov_nics": sriov,
        "ovs_offload_nics": offload,
        "networks": draw(st.lists(st.builds(
            lambda i, b, a: f"{i}/{b}/{a}", IFNAME, IFNAME, st.text(min_size=1, max_size=12).filter(
                lambda a: a.strip() == a and "\n" not in a)), max_size=2)),
        "pools": draw(st.dictionaries(NAME, st.fixed_dictionaries(
            {"pfs": st.lists(st.sampled_from(managed), max_size=2) if managed else st.just([])},
            optional={"model": MODEL}), max_size=2)),
        "ledger": draw(st.sampled_from(["/var/lib/vfplugin/ledger.sqlite3", "/srv/ledger", "/"])),
        "mac_prefix": draw(MAC_PREFIX),
        "reservation_ttl": draw(st.integers(1, 7 * 24 * 3600)),
        "sysfs_root": draw(st.sampled_from(["/", "/tmp/fixture"])),
    }
    # any key may be left to its default, but the PFs the pools name
    return {k: v for k, v in doc.items() if k in ("sriov_nics", "ovs_offload_nics") or draw(st.booleans())}


@given(config_documents())
def test_a_valid_configuration_is_accepted_and_reads_back_equal(doc):
    config = parse(doc, "/etc/vfplugin/vfplugin.yaml")
    assert parse(document(config)) == config
    assert parse(yaml.safe_load(yaml.safe_dump(document(config), sort_keys=False))) == config


@given(config_documents(), st.sampled_from(KEYS), st.data())
def test_a_bad_value_is_refused_in_one_line_naming_its_key(doc, key, data):
    doc[key] = data.draw(POOLS | JUNK if key == "pools" else JUNK, label=key)
    try:
        config = parse(doc, "/etc/vfplugin/vfplugin.yaml")
    except ConfigError as e:
        text = one_line(e)
        assert text.startswith("/etc/vfplugin/vfplugin.yaml: ")
        # a PF dropped from the managed lists makes the pools that name it wrong, not the list
        assert e.kwargs["key"].partition(".")[0] == key or (
            key in ("sriov_nics", "ovs_offload_nics") and e.kwargs["key"].startswith("pools.")), text
    else:
        assert parse(document(config)) == config


@given(st.sampled_from(["eth2", "eth3"]), POOLS)
def test_any_pools_mapping_is_accepted_or_refused_in_one_line_naming_the_pool(pf, pools):
    try:
        config = parse({"sriov_nics": [pf], "pools": pools})
    except ConfigError as e:
        one_line(e)
        assert any(e.kwargs["key"].startswith(f"pools.{name}") for name in pools), str(e)
    else:
        assert parse(document(config)) == config


@given(st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=12) | st.integers(), JUNK, max_size=4)
       | JUNK)
def test_any_document_is_accepted_or_refused_in_one_line(doc):
    try:
        config = parse(doc)
    except ConfigError as e:
        one_line(e)
    else:
        assert parse(document(config)) == config


# --- requests ----------------------------------------------------------------------------------------------

WHAT = {  # the word an InvalidValue uses for each attribute
    "id": "nic id", "vf": "PCI address", "pf": "PF name", "pool": "pool name", "model": "model",
    "network": "network name", "mac": "MAC address", "vlan": "VLAN", "qos": "qos", "trust": "trust",
    "spoofchk": "spoofchk",
    "link_state": "link_state", "min_tx_rate": "min_tx_rate", "max_tx_rate": "max_tx_rate",
}
VALID = {
    "id": NIC_ID, "vf": PCI.map(str), "pf": IFNAME, "pool": NAME, "model": MODEL, "mac": MAC,
    "vlan": st.integers(1, 4094).map(str), "qos": st.integers(0, 7).map(str), "trust": ONOFF, "spoofchk": ONOFF,
    "link_state": st.sampled_from(["auto", "enable", "disable"]),
    "min_tx_rate": st.integers(0, 400_000).map(str), "max_tx_rate": st.integers(0, 400_000).map(str),
}


@st.composite
def nic_attributes(draw: st.DrawFn, bad: bool) -> dict[str, str]:
    selector = draw(st.sampled_from(["vf", "pf", "pool", "model"]))
    options = [a for a in ATTRIBUTES if a in VALID and a != "id" and a not in SELECTORS]
    keys = ["id", selector] + draw(st.lists(st.sampled_from(options), unique=True))
    attrs = {k: draw(VALID[k]) for k in keys}
    if bad:
        for key in draw(st.lists(st.sampled_from(ATTRIBUTES), min_size=1, max_size=2, unique=True)):
            attrs[key] = draw(TEXT)
        if draw(st.booleans()):
            attrs[draw(st.sampled_from(["driver", "Pool", "vlan "]))] = draw(TEXT)
    return attrs


def round_trips(nic: NicRequest) -> None:
    assert parse_request(nic.attributes()) == nic
    [element] = ET.fromstring(metadata_fragment([nic]))  # what vfctl attach hands to libvirt
    assert parse_request(element.attrib) == nic


@given(nic_attributes(bad=False))
def test_a_valid_request_is_accepted_and_reads_back_equal(attrs):
    if "min_tx_rate" in attrs and "max_tx_rate" in attrs:
        assume(int(attrs["max_tx_rate"]) == 0 or int(attrs["min_tx_rate"]) <= int(attrs["max_tx_rate"]))
    if "qos" in attrs:
        assume("vlan" in attrs)
    round_trips(parse_request(attrs))


@given(nic_attributes(bad=True))
def test_a_bad_request_is_refused_in_one_line_naming_the_attribute(attrs):
    try:
        nic = parse_request(attrs)
    except InvalidValue as e:
        one_line(e)
        what, value = e.kwargs["what"], e.kwargs["value"]
        if what == "nic attribute":
            assert value in attrs and value not in ATTRIBUTES
        elif what.endswith(" selector"):
            assert value == (",".join(s for s in SELECTORS if s in attrs) or "(none)")
        else:
            assert any(WHAT[k] == what and attrs[k] == value for k in attrs if k in WHAT), (what, value)
    else:
        round_trips(nic)


# --- addresses -----------------------------------------------------------------------------------------------


@given(PCI)
def test_a_pci_address_reads_back_from_each_of_its_forms(address):
    assert PciAddress.parse(str(address)) == address
    assert PciAddress.parse(str(address).upper()) == address
    assert PciAddress.from_libvirt(address.libvirt_attrs()) == address
    if address.domain == 0:
        assert PciAddress.parse(str(address)[5:]) == address


@given(st.one_of(TEXT, st.from_regex(r"\A[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-9]\Z")))
def test_a_pci_address_text_is_accepted_in_canonical_form_or_refused_in_one_line(text):
    try:
        address = PciAddress.parse(text)
    except InvalidValue as e:
        assert (e.kwargs["what"], e.kwargs["value"]) == ("PCI address", text)
        one_line(e)
    else:
        assert PciAddress.parse(str(address)) == address
        assert str(address) == text.strip().lower() or str(address) == "0000:" + text.strip().lower()


@given(st.fixed_dictionaries({}, optional={k: TEXT | st.sampled_from(["0x0a", "0x1f", "0x20", "0x100", "-1",
                                                                        "0x_1", "7", "8", "0xffff", "0x10000"])
                                           for k in ("domain", "bus", "slot", "function")}))
def test_a_libvirt_address_is_accepted_in_range_or_refused_in_one_line(attrs):
    try:
        address = PciAddress.from_libvirt(attrs)
    except InvalidValue as e:
        assert e.kwargs["what"] == "PCI address"
        one_line(e)
    else:
        assert PciAddress.parse(str(address)) == address
        assert PciAddress.from_libvirt(address.libvirt_attrs()) == address


@given(MAC | TEXT)
def test_a_mac_is_accepted_lower_case_or_refused_in_one_line(text):
    try:
        mac = parse_mac(text)
    except InvalidValue as e:
        assert (e.kwargs["what"], e.kwargs["value"]) == ("MAC address", text)
        one_line(e)
    else:
        assert mac == text.lower() and parse_mac(mac) == mac


@given(MAC_PREFIX | TEXT)
def test_a_mac_prefix_is_accepted_lower_case_or_refused_in_one_line(text):
    try:
        prefix = parse_mac_prefix(text)
    except InvalidValue as e:
        assert e.kwargs["what"] == "MAC prefix"
        one_line(e)
    else:
        assert prefix == text.lower() and parse_mac_prefix(prefix) == prefix


@given(st.integers(-5, 5000) | st.integers().map(str) | TEXT | JUNK)
def test_an_integer_is_accepted_in_range_or_refused_in_one_line(value):
    try:
        number = parse_int(value, "VLAN", 1, 4094)
    except InvalidValue as e:
        assert e.kwargs["what"] == "VLAN"
        one_line(e)
    else:
        assert 1 <= number <= 4094 and parse_int(str(number), "VLAN", 1, 4094) == number
        if isinstance(value, str):  # decimal digits as written by people and by vfplugin itself
            assert value.strip().lstrip("+-0") == str(number), value
