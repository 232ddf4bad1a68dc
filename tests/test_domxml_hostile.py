"""Hostile and broken domain XML: every one is refused by ``parse_domain`` with one ``RequestError`` line.

The hook reads the XML libvirt hands it and ``vfctl`` reads users' files; neither may follow an entity, fetch
a URL, expand a billion laughs, choke on 50 MB, or half-apply a bad request. An error names the source and
the problem on one line, and nothing comes out of a parse that failed.
"""

from __future__ import annotations

import time

import pytest

from vfplugin.domread import MAX_NICS, read_domain
from vfplugin.domxml import MAX_BYTES, parse_domain
from vfplugin.errors import RequestError

pytestmark = pytest.mark.pure

HEAD = "<domain type='kvm'>\n  <name>evil</name>\n  <uuid>6f2d3c1e-8a4b-4c2d-9e1f-0a1b2c3d4e5f</uuid>\n"


def with_nics(*nics: str) -> str:
    body = "\n".join(f"      {n}" for n in nics)
    return (
        f"{HEAD}  <metadata>\n    <vfp:nics xmlns:vfp='urn:vfplugin:1'>\n{body}\n"
        "    </vfp:nics>\n  </metadata>\n</domain>\n"
    )


BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE domain [\n  <!ENTITY lol "lol">\n'
    + "".join(
        f'  <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n' for i in range(1, 10)
    )
    + "]>\n<domain><name>&lol9;</name></domain>\n"
)

CASES = {
    "malformed": (HEAD + "  <devices>\n    <interface type='hostdev'>\n  </devices>\n</domain>\n", "line 6"),
    "unclosed root": (HEAD, "malformed XML at line"),
    "empty": ("", "malformed XML at line 1"),
    "external entity": (
        '<?xml version="1.0"?>\n<!DOCTYPE domain [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
        "<domain><name>&xxe;</name></domain>\n",
        "DOCTYPE",
    ),
    "external DTD": ('<!DOCTYPE domain SYSTEM "http://example.invalid/evil.dtd">\n<domain/>', "DOCTYPE"),
    "parameter entity": (
        '<!DOCTYPE domain [<!ENTITY % p SYSTEM "http://example.invalid/x"> %p;]><domain/>',
        "DOCTYPE",
    ),
    "billion laughs": (BILLION_LAUGHS, "DOCTYPE"),
    "doctype after a comment": ("<!-- hi -->\n<?pi x?>\n<!doctype domain>\n<domain/>", "DOCTYPE"),
    "undefined entity": ("<domain><name>&nope;</name></domain>", "malformed XML at line 1"),
    "not a domain": ("<network><name>default</name></network>", "root element is <network>, expected"),
    "namespaced root": ("<x:domain xmlns:x='urn:x'><name>a</name></x:domain>", "expected <domain>"),
    "no name": ("<domain type='kvm'><memory>1</memory></domain>", "has no <name>"),
    "utf-16": ("<domain><name>a</name></domain>".encode("utf-16"), "not UTF-8"),
    "unknown selector": (with_nics("<vfp:nic id='net0' switch='fast'/>"), "'switch' is invalid: unknown"),
    "no selector": (with_nics("<vfp:nic id='net0' vlan='10'/>"), "exactly one selector"),
    "two selectors": (with_nics("<vfp:nic id='net0' pool='fast' pf='eth2'/>"), "exactly one selector"),
    "vlan 5000": (with_nics("<vfp:nic id='net0' pool='fast' vlan='5000'/>"), "VLAN '5000' is invalid"),
    "vlan 0": (with_nics("<vfp:nic id='net0' pool='fast' vlan='0'/>"), "VLAN '0' is invalid"),
    "qos without vlan": (with_nics("<vfp:nic id='net0' pool='fast' qos='3'/>"), "needs a vlan"),
    "bad mac": (with_nics("<vfp:nic id='net0' pool='fast' mac='52:54:00:zz:00:01'/>"), "MAC address '52:54"),
    "multicast mac": (with_nics("<vfp:nic id='net0' pool='fast' mac='01:00:5e:00:00:01'/>"), "multicast"),
    "bad vf address": (with_nics("<vfp:nic id='net0' vf='0000:0a:00.9'/>"), "PCI address '0000:0a:00.9'"),
    "duplicate nic id": (
        with_nics("<vfp:nic id='net0' pool='fast'/>", "<vfp:nic id='net0' pool='slow'/>"),
        "nic id 'net0' is used twice",
    ),
    "same vf twice": (
        with_nics("<vfp:nic id='a' vf='0000:0a:00.2'/>", "<vfp:nic id='b' vf='0a:00.2'/>"),
        "both ask for VF 0000:0a:00.2",
    ),
    "same mac twice": (
        with_nics(
            "<vfp:nic id='a' pool='p' mac='52:54:00:00:00:01'/>",
            "<vfp:nic id='b' pool='p' mac='52:54:00:00:00:01'/>",
        ),
        "both ask for MAC",
    ),
    "unknown attribute": (with_nics("<vfp:nic id='net0' pool='fast' speed='10G'/>"), "'speed' is invalid"),
    "namespaced attribute": (with_nics("<vfp:nic vfp:id='net0' pool='fast'/>"), "unknown"),
    "bad nic id": (with_nics("<vfp:nic id='net 0' pool='fast'/>"), "nic id 'net 0' is invalid"),
    "missing nic id": (with_nics("<vfp:nic pool='fast'/>"), "nic #1: nic id None is invalid"),
    "unknown element": (with_nics("<vfp:card id='net0' pool='fast'/>"), "unexpected <card> in <nics>"),
    "two nics containers": (
        HEAD + "  <metadata>\n    <a:nics xmlns:a='urn:vfplugin:1'/>\n"
        "    <b:nics xmlns:b='urn:vfplugin:1'/>\n  </metadata>\n</domain>\n",
        "2 <nics> elements",
    ),
    "bad link_state": (with_nics("<vfp:nic id='net0' pool='fast' link_state='up'/>"), "link_state 'up'"),
    "bad trust": (with_nics("<vfp:nic id='net0' pool='fast' trust='maybe'/>"), "trust 'maybe'"),
    "min above max rate": (
        with_nics("<vfp:nic id='net0' pool='fast' min_tx_rate='100' max_tx_rate='10'/>"), "above max_tx_rate"
    ),
    "bad hostdev address": (
        HEAD + "  <devices>\n    <hostdev mode='subsystem' type='pci'>\n      <source>\n"
        "        <address domain='0x0000' bus='zz' slot='0x00' function='0x1'/>\n      </source>\n"
        "    </hostdev>\n  </devices>\n</domain>\n",
        "<hostdev> at line 5: PCI address",
    ),
    "same device passed twice": (
        HEAD + "  <devices>\n"
        + "    <hostdev mode='subsystem' type='pci'><source><address bus='0x0a' slot='0x00' function='0x1'/>"
        "</source></hostdev>\n" * 2
        + "  </devices>\n</domain>\n",
        "PCI device 0000:0a:00.1 is passed through twice",
    ),
    "alias on two devices": (
        HEAD + "  <devices>\n"
        + "    <interface type='user'><alias name='ua-vfplugin-x'/></interface>\n" * 2
        + "  </devices>\n</domain>\n",
        "alias 'ua-vfplugin-x' is on two devices",
    ),
    "bad cpuset": (HEAD + "  <vcpu cpuset='0-3,x'>2</vcpu>\n</domain>\n", "vcpu cpuset '0-3,x' is invalid"),
    "bad nodeset": (
        HEAD + "  <numatune>\n    <memory nodeset='1-0'/>\n  </numatune>\n</domain>\n",
        "numatune nodeset '1-0'",
    ),
    "bad uuid": (HEAD.replace("6f2d3c1e-", "6f2d3c1g-") + "</domain>", "<uuid> '6f2d3c1g-8a4b-4c2d"),
    "text declaring latin-1": (
        "<?xml version='1.0' encoding='ISO-8859-1'?><domain><name>a</name></domain>", "pass the raw bytes"
    ),
    "deeply nested": ("<domain><name>a</name>" + "<x>" * 5000 + "</x>" * 5000 + "</domain>", "malformed XML"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_input_is_refused_with_one_line(case: str) -> None:
    data, expected = CASES[case]
    with pytest.raises(RequestError) as info:
        parse_domain(data, "evil.xml")
    message = str(info.value)
    assert message.startswith("evil.xml: "), message
    assert expected in message, message
    assert "\n" not in message


def test_a_50_megabyte_input_is_refused_before_parsing() -> None:
    data = b"<domain><name>big</name><description>" + b"x" * (50 * 1024 * 1024) + b"</description></domain>"
    started = time.monotonic()
    with pytest.raises(RequestError, match=r"above the 4194304-byte limit"):
        parse_domain(data, "big.xml")
    with pytest.raises(RequestError, match=r"above the 4194304-byte limit"):
        parse_domain(data.decode(), "big.xml")
    assert time.monotonic() - started < 1.0  # refused by its size, not after a parse


def test_multibyte_text_just_under_the_limit_in_characters_is_measured_in_bytes() -> None:
    filler = "é" * (MAX_BYTES // 2 + 10)  # fewer characters than the limit, more bytes
    with pytest.raises(RequestError, match="byte limit"):
        parse_domain(f"<domain><name>a</name><description>{filler}</description></domain>")


def test_the_word_doctype_inside_the_document_is_not_a_doctype() -> None:
    domain = parse_domain(
        "<domain><!-- <!DOCTYPE x> --><name>a</name><description>&lt;!DOCTYPE&gt;</description></domain>"
    )
    assert domain.name == "a"


def test_billion_laughs_refused_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(RequestError):
        parse_domain(BILLION_LAUGHS)
    assert time.monotonic() - started < 0.5


def test_the_error_names_the_line_of_malformed_xml() -> None:
    data, _ = CASES["malformed"]
    with pytest.raises(RequestError, match=r"^evil\.xml: malformed XML at line 6, column \d+: "):
        parse_domain(data, "evil.xml")


@pytest.mark.parametrize(
    "data",
    [
        HEAD + "  <devices>\n" + "<interface type='user'/>\n" * 150_000 + "  </devices>\n</domain>\n",
        HEAD + "  <vcpu cpuset='" + ",".join(["0-16383"] * 200_000) + "'>1</vcpu>\n</domain>\n",
    ],
    ids=["150000 interfaces", "200000 full cpu ranges"],
)
def test_big_documents_under_the_limit_take_linear_time(data: str) -> None:
    assert len(data.encode()) <= MAX_BYTES
    started = time.monotonic()
    domain = parse_domain(data)
    domain.to_bytes()
    assert time.monotonic() - started < 5.0


@pytest.mark.parametrize("count", [MAX_NICS + 1, 10_000, 60_000])
def test_a_request_of_more_nics_than_the_limit_is_refused_early(count: int) -> None:
    # Found by fuzzing: 10,000 nics took 4-5 s of validation before anything refused them.
    data = with_nics(*(f"<vfp:nic id='n{i}' pool='p'/>" for i in range(count))).encode()
    for read in (read_domain, parse_domain):
        started = time.monotonic()
        with pytest.raises(RequestError, match=f"more than {MAX_NICS} nics"):
            read(data, "big.xml")
        assert time.monotonic() - started < 1.0


def test_a_request_of_exactly_the_limit_is_read() -> None:
    data = with_nics(*(f"<vfp:nic id='n{i}' pool='p'/>" for i in range(MAX_NICS)))
    assert len(parse_domain(data).requests()) == MAX_NICS
