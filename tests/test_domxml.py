"""The domain XML rewriter (vfplugin/domxml.py): golden pairs, reading, in-place edits, MAC generation.

Golden pairs live in ``tests/data/domxml/<case>-in.xml`` and ``<case>-out.xml``: each case runs one operation
(``CASES`` below) on the ``-in`` document and compares the result with ``-out`` as a unified diff. After an
intended change of output, regenerate the expected files and review the diff in git:

    VFPLUGIN_REGENERATE=1 .venv/bin/python -m pytest tests/test_domxml.py -q

The VF addresses the harness gives each nic are fixed in ``CASES`` (choosing VFs is the allocator's job, not
this module's); MACs come from the request or from ``generate_mac`` with the test's prefix.
"""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from conftest import ROOT, require, require_tool
from lxml import etree

from vfplugin import ALIAS_PREFIX, domxml
from vfplugin.addresses import PciAddress
from vfplugin.domxml import (
    Domain,
    HostdevRef,
    NumaHint,
    generate_mac,
    interface_xml,
    parse_domain,
    parse_nodeset,
)
from vfplugin.errors import InvalidValue, RequestError
from vfplugin.request import parse_request
from vfplugin.run import run

pytestmark = pytest.mark.pure

DATA = ROOT / "tests" / "data" / "domxml"
PREFIX = "52:54:00"
REGENERATE = os.environ.get("VFPLUGIN_REGENERATE") == "1"


def rewrite(addresses: Mapping[str, str]) -> Callable[[Domain], None]:
    """What ``vfctl rewrite`` does once VFs are chosen: materialize each request, drop stale owned devices."""

    def apply(domain: Domain) -> None:
        assert domain.uuid is not None
        domain.drop_stale()
        current = {ref.nic_id: ref.mac for ref in domain.hostdevs() if ref.nic_id}
        fixed = {nic.mac for nic in domain.requests() if nic.mac}
        used: set[str] = set()
        for nic in domain.requests():
            taken = domain.macs(except_nic=nic.id) | fixed | used
            mac = nic.mac or current.get(nic.id) or generate_mac(PREFIX, domain.uuid, nic.id, taken)
            used.add(mac)
            domain.materialize(nic, PciAddress.parse(addresses[nic.id]), mac)

    return apply


def attach(domain: Domain) -> None:
    """``vfctl attach plain --pool fast --nic sriov0 --vlan 30 --config``: request and interface together."""
    nic = parse_request({"id": "sriov0", "pool": "fast", "vlan": "30", "trust": "on"})
    domain.set_request(nic)
    assert domain.uuid is not None
    mac = generate_mac(PREFIX, domain.uuid, nic.id, set())
    domain.materialize(nic, PciAddress.parse("0000:0a:00.5"), mac)


def detach(domain: Domain) -> None:
    """``vfctl detach twonics --nic a --config``."""
    domain.drop_request("a")
    domain.drop_interface("a")


SEVERAL = {"net0": "0000:0a:00.2", "net1": "0000:0b:00.1", "net2": "0000:0a:00.3", "net3": "0000:0a:00.6"}
CASES: dict[str, Callable[[Domain], None]] = {
    "minimal-pool": rewrite({"net0": "0000:0a:00.2"}),
    "existing-interfaces": rewrite({"data": "0000:0a:01.0"}),
    "several-nics": rewrite(SEVERAL),
    "already-rewritten": rewrite(SEVERAL),  # its -in is several-nics-out: nothing may change
    "handwritten-hostdev": rewrite({"net0": "0000:0a:00.2"}),
    "vf-changed": rewrite({"net0": "0000:0a:00.4", "net1": "0000:0a:00.3"}),
    "foreign-metadata": rewrite({"uplink": "0000:3b:00.2"}),
    "libvirt-dump": rewrite({"sriov0": "0000:3b:02.1"}),
    "stale-interface": rewrite({"keep": "0000:0a:00.5"}),
    "compact": rewrite({"n": "0000:0a:00.7"}),
    "no-devices": rewrite({"net0": "0000:0a:00.2"}),
    "attach": attach,
    "detach": detach,
}


def run_case(case: str, data: bytes) -> bytes:
    domain = parse_domain(data, f"{case}-in.xml")
    CASES[case](domain)
    return domain.to_bytes()


def diff(expected: bytes, actual: bytes, name: str) -> str:
    lines = difflib.unified_diff(
        expected.decode().splitlines(keepends=True), actual.decode().splitlines(keepends=True),
        f"{name} (expected)", f"{name} (actual)",
    )
    return "".join(lines)


def test_every_case_has_its_golden_pair() -> None:
    inputs = {p.name[: -len("-in.xml")] for p in DATA.glob("*-in.xml")}
    outputs = {p.name[: -len("-out.xml")] for p in DATA.glob("*-out.xml")}
    assert inputs == set(CASES)
    assert outputs == set(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_output(case: str) -> None:
    if REGENERATE and case == "already-rewritten":  # its input is several-nics' output
        several = run_case("several-nics", (DATA / "several-nics-in.xml").read_bytes())
        (DATA / "already-rewritten-in.xml").write_bytes(several)
    actual = run_case(case, (DATA / f"{case}-in.xml").read_bytes())
    expected_path = DATA / f"{case}-out.xml"
    if REGENERATE:
        expected_path.write_bytes(actual)
    assert actual == expected_path.read_bytes(), diff(expected_path.read_bytes(), actual, expected_path.name)


@pytest.mark.parametrize("case", sorted(CASES))
def test_rewriting_the_output_again_changes_no_byte(case: str) -> None:
    out = (DATA / f"{case}-out.xml").read_bytes()
    again = run_case(case, out)
    assert again == out, diff(out, again, f"{case}-out.xml rewritten")


def test_an_already_rewritten_domain_comes_out_identical() -> None:
    data = (DATA / "already-rewritten-in.xml").read_bytes()
    assert data == (DATA / "several-nics-out.xml").read_bytes()
    assert run_case("already-rewritten", data) == data


def test_golden_files_validate_against_libvirts_schema() -> None:
    require_tool("virt-xml-validate", "xmllint")
    files = sorted(DATA.glob("*.xml"))
    assert len(files) == 2 * len(CASES)
    for path in files:
        result = run(["virt-xml-validate", str(path), "domain"], timeout=30, check=False)
        assert result.returncode == 0, f"{path.name}: {result.stderr or result.stdout}"


def test_interface_xml_validates_inside_a_domain(tmp_path: Path) -> None:
    require_tool("virt-xml-validate", "xmllint")
    nic = parse_request({"id": "net0", "pool": "fast", "vlan": "100"})
    element = interface_xml(nic, PciAddress.parse("0000:0a:00.2"), "52:54:00:12:34:56")
    domain = (
        "<domain type='qemu'><name>v</name><memory>65536</memory><os><type>hvm</type></os>"
        f"<devices>{element}</devices></domain>"
    )
    path = tmp_path / "attach.xml"
    path.write_text(domain)
    result = run(["virt-xml-validate", str(path), "domain"], timeout=30, check=False)
    assert result.returncode == 0, result.stderr or result.stdout


def test_libvirt_keeps_what_we_wrote_and_rewriting_its_dump_is_a_no_op() -> None:
    """libvirt's in-process test driver (no daemon) defines each output and dumps it back, re-serialized its
    way (single quotes, its own additions such as <target dev>): the request, devices and NUMA hint read from
    the dump are ours, and rewriting the dump once more changes no byte."""
    try:
        import libvirt
    except ImportError:
        libvirt = None
    require(libvirt is not None, "python3-libvirt is not installed (./run-tests installs it)")
    conn = libvirt.open("test:///default")
    try:
        for case in sorted(CASES):
            ours = load(case, "out")
            domain = conn.defineXMLFlags(ours.to_bytes().decode(), libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
            try:
                dump = domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            finally:
                domain.undefine()
            theirs = parse_domain(dump, f"{case} as libvirt dumps it")
            assert (theirs.name, theirs.uuid) == (ours.name, ours.uuid), case
            assert theirs.requests() == ours.requests(), case
            assert theirs.hostdevs() == ours.hostdevs(), case
            assert theirs.numa_hint() == ours.numa_hint(), case
            untouched = theirs.to_bytes()
            rewritten = run_case(case, dump.encode())
            assert rewritten == untouched, diff(untouched, rewritten, f"{case} as libvirt dumps it")
    finally:
        conn.close()


def test_every_declared_xpath_is_exercised_by_the_golden_files() -> None:
    """Like virt-manager's test_checkprops: a declaration no golden document exercises is dead or untested."""
    documents = [etree.parse(str(path)).getroot() for path in sorted(DATA.glob("*-out.xml"))]
    declared = {name: value for name, value in vars(domxml).items() if isinstance(value, etree.XPath)}
    assert len(declared) >= 6
    for name, xpath in declared.items():
        assert any(xpath(doc, prefix=ALIAS_PREFIX) for doc in documents), f"{name} matches no golden document"


# --- reading ------------------------------------------------------------------------------------------------


def load(case: str, suffix: str = "in") -> Domain:
    return parse_domain((DATA / f"{case}-{suffix}.xml").read_bytes(), f"{case}-{suffix}.xml")


def test_name_uuid_and_requests_are_read() -> None:
    domain = load("several-nics")
    assert domain.name == "router"
    assert domain.uuid == "3e9a7b52-6c1d-4f80-b2a4-5d6e7f809a1b"
    nics = domain.requests()
    assert [(n.id, n.selector, n.value) for n in nics] == [
        ("net0", "pool", "fast"),
        ("net1", "model", "I350 Ethernet Controller Virtual Function"),
        ("net2", "pf", "eth2"),
        ("net3", "vf", "0000:0a:00.6"),  # normalized from 0000:0A:00.6
    ]
    assert nics[0].vlan == 100 and nics[0].trust is False and nics[0].max_tx_rate == 1000
    assert nics[1].mac == "52:54:00:12:34:56"
    assert domain.has_request()


def test_request_is_found_by_namespace_uri_whatever_the_prefix() -> None:
    nics = load("foreign-metadata").requests()
    assert [(n.id, n.mac) for n in nics] == [("uplink", "52:54:00:ab:cd:ef")]


def test_a_domain_without_the_namespace_has_no_request() -> None:
    domain = load("attach")
    assert domain.requests() == () and not domain.has_request()
    assert domain.hostdevs() == ()


def test_hostdevs_reports_hand_written_and_owned_devices() -> None:
    domain = load("handwritten-hostdev", "out")
    refs = domain.hostdevs()
    owned = [r for r in refs if r.nic_id == "net0"]
    assert len(owned) == 1 and owned[0].kind == "interface" and str(owned[0].address) == "0000:0a:00.2"
    assert owned[0].mac is not None and owned[0].vlan is None
    assert HostdevRef(PciAddress.parse("0000:0a:10.1"), "interface", None, "52:54:00:77:66:55", 7) in refs
    assert HostdevRef(PciAddress.parse("0000:0a:10.0"), "hostdev", None, None, None) in refs
    assert len(refs) == 3


def test_hostdevs_ignores_non_pci_and_non_passthrough_devices() -> None:
    domain = parse_domain(
        "<domain><name>u</name><devices>"
        "<hostdev mode='subsystem' type='usb'>"
        "<source><vendor id='0x1234'/><product id='0x5678'/></source></hostdev>"
        "<interface type='network'><mac address='52:54:00:00:00:09'/><source network='default'/></interface>"
        "</devices></domain>"
    )
    assert domain.hostdevs() == ()
    assert domain.macs() == {"52:54:00:00:00:09"}


def test_numa_hint_reads_numatune_nodeset_and_vcpu_cpuset() -> None:
    assert load("libvirt-dump").numa_hint() == NumaHint(frozenset({0}), frozenset({0, 1, 3}))
    assert load("minimal-pool").numa_hint() == NumaHint(frozenset(), frozenset())


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", {0}), ("0-3", {0, 1, 2, 3}), ("0-3,^2", {0, 1, 3}), (" 1 , 4-5 ,^5", {1, 4}), ("^1,0-2", {0, 2})],
)
def test_libvirt_range_syntax(text: str, expected: set[int]) -> None:
    assert parse_nodeset(text, "cpuset") == expected


@pytest.mark.parametrize("text", ["", "a", "3-1", "^1-2", "0-99999999", "1,,2", "-1"])
def test_bad_ranges_are_refused(text: str) -> None:
    with pytest.raises(InvalidValue):
        parse_nodeset(text, "cpuset")


def test_macs_can_leave_out_the_nics_own_interface() -> None:
    domain = load("vf-changed")
    assert domain.macs() == {"52:54:00:3c:9e:11", "52:54:00:00:00:02", "52:54:00:3c:9e:12"}
    assert domain.macs(except_nic="net0") == {"52:54:00:00:00:02", "52:54:00:3c:9e:12"}


# --- writing ------------------------------------------------------------------------------------------------


def test_replacing_an_owned_interface_keeps_its_position_and_libvirts_additions() -> None:
    domain = load("vf-changed", "out")
    interfaces = domain._root.findall("devices/interface")
    names = [i.find("alias").get("name") if i.find("alias") is not None else None for i in interfaces]
    assert names == [ALIAS_PREFIX + "net0", None, ALIAS_PREFIX + "net1"]
    net0 = interfaces[0]
    assert net0.find("driver").get("name") == "vfio"
    assert net0.find("rom").get("bar") == "off"
    assert net0.find("address").get("slot") == "0x05"  # the guest-side address libvirt assigned
    assert net0.find("source/address").get("function") == "0x4"
    assert net0.find("vlan/tag").get("id") == "300"
    assert interfaces[2].find("vlan") is None  # net1's request has no vlan any more


def test_other_interfaces_are_byte_identical_after_a_rewrite() -> None:
    source = (DATA / "existing-interfaces-in.xml").read_text()
    out = (DATA / "existing-interfaces-out.xml").read_text()
    for original in ('<interface type="network">', '<interface type="bridge">'):
        start = source.index(original)
        block = source[start : source.index("</interface>", start) + len("</interface>\n")]
        assert block in out


def test_a_new_interface_goes_after_the_last_interface() -> None:
    domain = load("existing-interfaces", "out")
    children = [c.tag for c in domain._root.find("devices") if isinstance(c.tag, str)]
    assert children == ["emulator", "interface", "interface", "interface", "serial", "console"]
    assert domain._root.findall("devices/interface")[2].get("type") == "hostdev"


def test_materialize_refuses_a_vf_a_hand_written_hostdev_uses_and_changes_nothing() -> None:
    domain = load("handwritten-hostdev")
    before = domain.to_bytes()
    nic = domain.requests()[0]
    with pytest.raises(RequestError, match="already passed through by a hand-written <hostdev>"):
        domain.materialize(nic, PciAddress.parse("0000:0a:10.0"), "52:54:00:01:01:01")
    with pytest.raises(RequestError, match="already used by another <interface>"):
        domain.materialize(nic, PciAddress.parse("0000:0a:00.2"), "52:54:00:77:66:55")
    with pytest.raises(RequestError, match="MAC address"):
        domain.materialize(nic, PciAddress.parse("0000:0a:00.2"), "01:00:5e:00:00:01")
    assert domain.to_bytes() == before


def test_drop_stale_removes_owned_devices_without_a_request() -> None:
    domain = load("stale-interface")
    assert domain.drop_stale() == ("gone",)
    assert [r.nic_id for r in domain.hostdevs()] == ["keep"]
    assert domain.drop_stale() == ()


def test_drop_interface_touches_only_its_own_alias() -> None:
    domain = load("detach")
    domain.drop_interface("nope")
    assert domain.to_bytes() == load("detach").to_bytes()
    domain.drop_interface("b")
    assert [r.nic_id for r in domain.hostdevs()] == ["a"]


def test_set_request_replaces_a_nic_in_place_and_drop_request_removes_the_empty_container() -> None:
    domain = load("detach")
    domain.set_request(parse_request({"id": "a", "vf": "0000:0a:00.2", "mac": "52:54:00:0a:0a:0a"}))
    assert [(n.id, n.selector) for n in domain.requests()] == [("a", "vf"), ("b", "pool")]
    domain.drop_request("a")
    domain.drop_request("b")
    assert not domain.has_request()
    text = domain.to_bytes().decode()
    assert "urn:vfplugin:1" not in text and "<metadata/>" in text


def test_set_request_creates_metadata_where_libvirt_puts_it() -> None:
    out = load("attach", "out")
    tags = [c.tag for c in out._root if isinstance(c.tag, str)]
    assert tags[:4] == ["name", "uuid", "description", "metadata"]
    assert [n.id for n in out.requests()] == ["sriov0"]
    assert out.requests()[0].trust is True


def test_to_bytes_keeps_the_declaration_situation() -> None:
    declaration = b'<?xml version="1.0" encoding="UTF-8"?>\n<!-- written'
    assert (DATA / "foreign-metadata-out.xml").read_bytes().startswith(declaration)
    assert (DATA / "compact-out.xml").read_bytes().startswith(b"<?xml version='1.0'?><domain")
    assert not (DATA / "compact-out.xml").read_bytes().endswith(b"\n")
    assert (DATA / "minimal-pool-out.xml").read_bytes().startswith(b"<domain")
    text = (DATA / "foreign-metadata-out.xml").read_text(encoding="utf-8")
    assert "café" in text and "&lt;blue&gt; &amp; friends" in text and "keep this comment" in text


def test_uuid_is_canonical_whatever_the_file_says() -> None:
    domain = parse_domain("<domain><name>n</name><uuid>6F2D3C1E8A4B4C2D9E1F0A1B2C3D4E5F</uuid></domain>")
    assert domain.uuid == UUID


def test_latin1_bytes_with_their_declaration_are_read_and_written_in_latin1() -> None:
    text = "<?xml version='1.0' encoding='ISO-8859-1'?>\n<domain><name>caf\xe9</name></domain>\n"
    data = text.encode("latin-1")
    domain = parse_domain(data)
    assert domain.name == "caf\xe9"
    assert domain.to_bytes() == data


def test_set_uuid_fills_a_missing_uuid_and_never_changes_one() -> None:
    domain = parse_domain("<domain>\n  <name>n</name>\n  <memory>1</memory>\n</domain>\n")
    domain.set_uuid("AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE")
    assert domain.uuid == "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
    assert domain.to_bytes() == (
        b"<domain>\n  <name>n</name>\n  <uuid>aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee</uuid>\n"
        b"  <memory>1</memory>\n</domain>\n"
    )
    domain.set_uuid("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee")
    with pytest.raises(RequestError, match="already has uuid"):
        domain.set_uuid("bbbbbbbb-bbbb-4ccc-8ddd-eeeeeeeeeeee")


def test_interface_xml_is_the_owned_interface_as_libvirt_formats_it() -> None:
    nic = parse_request({"id": "net0", "pool": "fast", "vlan": "100", "qos": "3"})
    assert interface_xml(nic, PciAddress.parse("0000:0a:00.2"), "52:54:00:12:34:56") == (
        '<interface type="hostdev" managed="yes">\n'
        '  <mac address="52:54:00:12:34:56"/>\n'
        "  <source>\n"
        '    <address type="pci" domain="0x0000" bus="0x0a" slot="0x00" function="0x2"/>\n'
        "  </source>\n"
        "  <vlan>\n"
        '    <tag id="100"/>\n'  # no qos attribute: libvirt's <vlan> has none; netlink sets the priority
        "  </vlan>\n"
        '  <alias name="ua-vfplugin-net0"/>\n'
        "</interface>\n"
    )
    etree.fromstring(interface_xml(nic, PciAddress.parse("0000:0a:00.2"), "52:54:00:12:34:56"))


def test_importing_domxml_costs_only_lxml_and_the_standard_library() -> None:
    """The hook parses the domain XML at each start/stop of a managed domain: nothing heavy comes along."""
    heavy = ("yaml", "libvirt", "pyroute2", "sqlite3", "hashlib")
    code = f"import sys, vfplugin.domxml\nprint(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr


# --- MAC generation -----------------------------------------------------------------------------------------

UUID = "6f2d3c1e-8a4b-4c2d-9e1f-0a1b2c3d4e5f"


def test_generated_mac_is_stable_per_domain_and_nic() -> None:
    first = generate_mac(PREFIX, UUID, "net0", set())
    assert first == generate_mac(PREFIX, UUID.upper(), "net0", frozenset())
    assert first.startswith("52:54:00:") and len(first.split(":")) == 6
    assert first != generate_mac(PREFIX, UUID, "net1", set())
    assert first != generate_mac(PREFIX, "7f2d3c1e-8a4b-4c2d-9e1f-0a1b2c3d4e5f", "net0", set())


def test_generated_mac_keeps_the_prefix_bits() -> None:
    for prefix in ("02", "0a:bb", "52:54:00:aa:01"):
        mac = generate_mac(prefix, UUID, "net0", set())
        assert mac.startswith(prefix + ":") and len(mac) == 17


def test_a_taken_mac_gives_the_next_deterministic_one() -> None:
    first = generate_mac(PREFIX, UUID, "net0", set())
    second = generate_mac(PREFIX, UUID, "net0", {first.upper()})
    assert second != first
    assert second == generate_mac(PREFIX, UUID, "net0", {first})
    third = generate_mac(PREFIX, UUID, "net0", {first, second})
    assert third not in {first, second}


def test_generate_mac_never_returns_a_taken_mac_even_when_the_space_is_nearly_full() -> None:
    prefix = "02:00:00:00:01"  # 256 addresses
    everything = {f"{prefix}:{i:02x}" for i in range(256)}
    free = f"{prefix}:9c"
    assert generate_mac(prefix, UUID, "net0", everything - {free}) == free
    with pytest.raises(InvalidValue, match="every address under it is taken"):
        generate_mac(prefix, UUID, "net0", everything)
