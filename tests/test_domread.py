"""Reading domain XML (vfplugin/domread.py): the hook's expat reading and the rewriter's lxml reading agree.

The hook reads the XML libvirt hands it with the standard library's expat (lxml would cost 20 ms per start and
stop); ``vfctl`` reads through its lxml tree. Both feed one ``Reader``, so they must find the same facts in
every golden document and refuse the same hostile ones, with one ``RequestError`` line each.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
from conftest import ROOT
from test_domxml_hostile import BILLION_LAUGHS, CASES, with_nics

from vfplugin.domread import MAX_BYTES, MAX_DEPTH, DomainFacts, read_domain
from vfplugin.domxml import parse_domain
from vfplugin.errors import RequestError

pytestmark = pytest.mark.pure

DATA = ROOT / "tests" / "data" / "domxml"
GOLDEN = sorted(path.name for path in DATA.glob("*.xml"))
# Only the wording of a syntax error is the parser's own (expat's "mismatched tag", libxml2's "Opening and
# ending tag mismatch"); the place and every other message are vfplugin's and the same.
SYNTAX = "malformed XML at line"


@pytest.mark.parametrize("name", GOLDEN)
def test_expat_and_lxml_read_the_same_facts_from_every_golden_document(name: str) -> None:
    raw = (DATA / name).read_bytes()
    facts = read_domain(raw, name)
    assert isinstance(facts, DomainFacts)
    assert facts == parse_domain(raw, name).facts


def test_the_golden_documents_exercise_every_fact_the_reader_reads() -> None:
    """Like virt-manager's test_checkprops: a path the reader follows that no golden document has is untested."""
    everything = [read_domain((DATA / name).read_bytes(), name) for name in GOLDEN]
    assert all(f.name for f in everything)
    assert any(f.uuid for f in everything)
    assert any(f.requests for f in everything)
    refs = [ref for f in everything for ref in f.hostdevs]
    assert {ref.kind for ref in refs} == {"interface", "hostdev"}
    assert any(ref.nic_id for ref in refs) and any(ref.nic_id is None for ref in refs)
    assert any(ref.mac for ref in refs) and any(ref.vlan for ref in refs)
    assert any(f.numa.nodeset for f in everything) and any(f.numa.cpuset for f in everything)


@pytest.mark.parametrize("case", sorted(CASES))
def test_both_readers_refuse_every_hostile_input_with_the_same_line(case: str) -> None:
    data, expected = CASES[case]
    raw = data if isinstance(data, bytes) else data.encode()
    if case == "text declaring latin-1":
        raw = data.encode("latin-1")  # as bytes it is a fine document: the hook always gets bytes
        assert read_domain(raw).name == "a"
        return
    with pytest.raises(RequestError) as by_expat:
        read_domain(raw, "evil.xml")
    with pytest.raises(RequestError) as by_lxml:
        parse_domain(raw, "evil.xml")
    hook, cli = str(by_expat.value), str(by_lxml.value)
    assert "\n" not in hook and hook.startswith("evil.xml: ")
    if expected.startswith(SYNTAX) or SYNTAX in cli:
        assert SYNTAX in hook, hook
        assert hook.split(",")[0] == cli.split(",")[0] or case == "deeply nested", (hook, cli)
    else:
        assert hook == cli
        assert expected in hook


def test_a_50_megabyte_input_is_refused_before_parsing() -> None:
    data = b"<domain><name>big</name><description>" + b"x" * (50 * 1024 * 1024) + b"</description></domain>"
    with pytest.raises(RequestError, match=f"above the {MAX_BYTES}-byte limit"):
        read_domain(data, "big.xml")


def test_billion_laughs_is_refused_as_a_doctype() -> None:
    with pytest.raises(RequestError, match="DOCTYPE"):
        read_domain(BILLION_LAUGHS.encode())


def test_a_doctype_after_the_root_is_a_syntax_error_not_a_declaration() -> None:
    with pytest.raises(RequestError, match=SYNTAX):
        read_domain(b"<domain><name>a</name></domain><!DOCTYPE x [<!ENTITY e 'e'>]>")


def test_nesting_deeper_than_libxml2_allows_is_refused() -> None:
    deep = b"<domain><name>a</name>" + b"<x>" * MAX_DEPTH + b"</x>" * MAX_DEPTH + b"</domain>"
    with pytest.raises(RequestError, match=f"deeper than {MAX_DEPTH} levels"):
        read_domain(deep)


def test_a_uuid_is_canonical_and_the_request_found_whatever_its_prefix() -> None:
    facts = read_domain(
        b"<domain><name>a</name><uuid>6F2D3C1E8A4B4C2D9E1F0A1B2C3D4E5F</uuid><metadata>"
        b"<x:nics xmlns:x='urn:vfplugin:1'><x:nic id='a' pool='p'/></x:nics></metadata></domain>"
    )
    assert facts.uuid == "6f2d3c1e-8a4b-4c2d-9e1f-0a1b2c3d4e5f"
    assert [nic.id for nic in facts.requests] == ["a"]


def test_reading_a_domain_imports_neither_lxml_nor_the_rewriter() -> None:
    code = (
        "import sys; from vfplugin.domread import read_domain; "
        f"read_domain({with_nics('<vfp:nic id=' + repr('net0') + ' pool=' + repr('p') + '/>').encode()!r}); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lxml', 'vfplugin')))"
    )
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    modules = ast.literal_eval(out.stdout)
    assert not any(m.startswith("lxml") for m in modules)
    assert "vfplugin.domxml" not in modules
