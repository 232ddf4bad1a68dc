"""Defects found by fuzzing the readers and the rewriter (issue 15), each kept as the case that found it.

Pure: ``domread.read_domain`` (expat, the hook's reader), ``domxml.parse_domain`` (lxml, the rewriter) and the
rewriter's edits. The hook-process cases are in tests/test_hook_fuzz_findings.py; the cases the mutation
fuzzer (bench/fuzz_domains.py) keeps finding are under tests/data/fuzz/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vfplugin.addresses import PciAddress
from vfplugin.domread import MAX_BYTES, read_domain, read_uuid
from vfplugin.domxml import parse_domain
from vfplugin.errors import RequestError, VfpluginError
from vfplugin.request import parse_request

pytestmark = pytest.mark.pure

FUZZ_CASES = Path(__file__).parent / "data" / "fuzz"
UUID = "6f2d3c1e-8a4b-4c2d-9e1f-0a1b2c3d4e5f"
NIC = parse_request({"id": "net0", "pool": "fast"})
VF = PciAddress.parse("0000:0a:10.0")
MAC = "52:54:00:12:34:56"


def outcome(read: Any, raw: bytes) -> tuple[str, Any]:
    """("ok", facts) or ("refused", None): what a reader made of ``raw``; anything else is a crash."""
    try:
        return "ok", read(raw)
    except VfpluginError as e:
        assert "\n" not in str(e)
        return "refused", None


def both(raw: bytes) -> tuple[tuple[str, Any], tuple[str, Any]]:
    return outcome(lambda r: read_domain(r, "x.xml"), raw), outcome(lambda r: parse_domain(r, "x.xml").facts, raw)


# --- encodings ----------------------------------------------------------------------------------------------


def test_an_encoding_python_does_not_know_is_one_line_for_both_readers():
    raw = b'<?xml version="1.0" encoding="EBCDIC-US"?><domain><name>a</name></domain>'
    for read in (read_domain, parse_domain):
        with pytest.raises(RequestError, match="encoding 'EBCDIC-US'"):
            read(raw, "x.xml")


def test_a_latin1_document_with_a_non_ascii_byte_rewrites_into_latin1_bytes():
    raw = (
        "<?xml version='1.0' encoding='ISO-8859-1'?>\n<domain>\n  <name>caf\xe9</name>\n"
        f"  <uuid>{UUID}</uuid>\n  <devices>\n  </devices>\n</domain>\n"
    ).encode("latin-1")
    domain = parse_domain(raw)
    domain.materialize(NIC, VF, MAC)
    out = domain.to_bytes()
    assert out.startswith(b"<?xml version='1.0' encoding='ISO-8859-1'?>") and b"caf\xe9" in out
    assert parse_domain(out).facts == domain.facts
    # libvirt's APIs take text: UTF-8, without the declaration that would contradict it
    text = domain.to_text()
    assert "café" in text and "encoding" not in text
    assert parse_domain(text).facts == domain.facts


@pytest.mark.parametrize("spelling", ["UTF8", "utf8", "UTF-8", "utf-8"])
def test_every_spelling_of_utf8_reads_the_same_in_both_readers(spelling):
    raw = f'<?xml version="1.0" encoding="{spelling}"?><domain><name>caf\xe9</name></domain>'.encode()
    (a, facts_a), (b, facts_b) = both(raw)
    assert (a, b) == ("ok", "ok") and facts_a == facts_b and facts_a.name == "café"


# --- one name for the domain ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        f"<domain><name>a</name><uuid>{UUID.replace('-', '').upper()}</uuid></domain>",
        f"<domain><!-- <uuid>11111111-1111-1111-1111-111111111111</uuid> --><name>a</name><uuid>{UUID}</uuid>"
        "</domain>",
        f"<domain><name>a</name><uuid> {UUID} </uuid><devices/></domain>",
        f"<domain><name>a</name><metadata><uuid>11111111-1111-1111-1111-111111111111</uuid></metadata>"
        f"<uuid>{UUID}</uuid></domain>",
    ],
    ids=["no dashes", "a comment first", "blanks", "a nested uuid first"],
)
def test_the_uuid_read_alone_is_the_one_the_full_read_gives(raw):
    assert read_uuid(raw.encode()) == read_domain(raw.encode()).uuid == UUID


def test_the_uuid_is_read_from_an_xml_broken_after_it():
    assert read_uuid(f"<domain><name>a</name><uuid>{UUID}</uuid><oops></domain>".encode()) == UUID
    with pytest.raises(RequestError):
        read_uuid(f"<domain><name>a</oops><uuid>{UUID}</uuid></domain>".encode())


# --- the rewriter's edits ----------------------------------------------------------------------------------


def test_text_in_a_devices_element_without_children_survives_an_added_interface():
    domain = parse_domain(f"<domain>\n  <name>a</name>\n  <uuid>{UUID}</uuid>\n  <devices>keep me</devices>\n</domain>")
    domain.materialize(NIC, VF, MAC)
    out = domain.to_bytes()
    assert b"keep me" in out and b"ua-vfplugin-net0" in out


@pytest.mark.parametrize("blank", ["<uuid></uuid>", "<uuid/>", "<uuid>  </uuid>"])
def test_a_blank_uuid_is_filled_not_doubled(blank):
    domain = parse_domain(f"<domain>\n  <name>a</name>\n  {blank}\n</domain>\n")
    domain.set_uuid(UUID)
    out = domain.to_bytes()
    assert out.count(b"<uuid") == 1 and domain.uuid == UUID and read_domain(out).uuid == UUID


def test_an_input_just_under_the_limit_never_rewrites_into_an_output_vfplugin_refuses():
    head = f"<domain>\n  <name>a</name>\n  <uuid>{UUID}</uuid>\n  <!-- "
    tail = " -->\n  <devices>\n  </devices>\n</domain>\n"
    raw = (head + "x" * (MAX_BYTES - len(head) - len(tail) - 10) + tail).encode()
    assert len(raw) <= MAX_BYTES
    domain = parse_domain(raw)
    domain.materialize(NIC, VF, MAC)
    with pytest.raises(RequestError, match="rewritten domain would be .* bytes, above the"):
        domain.to_bytes()


# --- the two readers agree ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'<domain xmlns:x="%%"><name>a</name></domain>',
        b'<domain><name>a</name><metadata><v:nics xmlns:v="::1"/></metadata></domain>',
        b'<domain><name xmlns="a b">a</name></domain>',
        '<domain><name>a</name><x\ufeff/></domain>'.encode(),
        '<domain a\ufeff="1"><name>a</name></domain>'.encode(),
        '<domain><name>\ufeffa</name></domain>'.encode(),
        b'<?xml version="1.0" encoding="UTF8"?><domain><name>\xc3\xa9</name></domain>',
        b'<domain><name>a</name><metadata><v:nics xmlns:v="urn:vfplugin&#58;1"><v:nic id="n" pool="p"/>'
        b"</v:nics></metadata></domain>",
    ],
    ids=["invalid URI", "invalid URI in metadata", "URI with a blank", "U+FEFF in an element name",
         "U+FEFF in an attribute name", "U+FEFF in a name", "UTF8", "namespace by character reference"],
)
def test_both_readers_give_equal_facts_or_both_refuse(raw):
    (a, facts_a), (b, facts_b) = both(raw)
    assert a == b and facts_a == facts_b


def test_every_case_the_fuzzer_kept_reads_the_same_in_both_readers():
    cases = sorted(FUZZ_CASES.glob("*.xml"))
    assert cases, f"no cases in {FUZZ_CASES}"
    for path in cases:
        (a, facts_a), (b, facts_b) = both(path.read_bytes())
        assert (a, facts_a) == (b, facts_b), path.name


def test_text_after_the_last_interface_of_a_one_line_document_is_kept_once():
    # Found by tests/test_props_reading.py: the new interface copied the anchor's tail instead of taking it.
    raw = (f"<domain><name>a</name><uuid>{UUID}</uuid><devices><interface type='user'/>tail</devices>"
           "</domain>").encode()
    domain = parse_domain(raw)
    domain.materialize(NIC, VF, MAC)
    assert domain.to_bytes().count(b"tail") == 1
