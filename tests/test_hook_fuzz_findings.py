"""Defects found by fuzzing, as the hook and ``vfctl rewrite`` meet them: real processes on the example host.

See tests/test_fuzz_findings.py for the pure cases. Each test here failed before its fix.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.hookrun import LIBVIRT_PATH, domain_xml, hostdev_interface, install, run_hook, vfctl
from tests.hosts import write_config
from vfplugin.ledger import Ledger, Want

pytestmark = pytest.mark.hook

I350_VF = "0000:0a:10.0"
UUID = "6f2d3c1e-8a4b-4c2d-9e1f-0a1b2c3d4e5f"


@pytest.fixture
def host(tmp_path: Path) -> tuple[Path, Path]:
    config = write_config(tmp_path, ovs_offload_nics=[], pools={"i350": {"pfs": ["eth2"]}})
    return install(tmp_path), config


def leases(config: Path) -> list:
    with Ledger.open(config.parent / "ledger.sqlite3") as ledger:
        return ledger.leases()


def managed(name: str, uuid_element: str) -> str:
    """A domain whose request is materialized on the I350 VF, with ``uuid_element`` for its <uuid>."""
    xml = domain_xml(name, uuid=UUID, nics='<vfp:nic id="net0" pool="i350"/>',
                     devices=hostdev_interface(I350_VF, nic_id="net0"))
    return xml.replace(f"<uuid>{UUID}</uuid>", uuid_element)


@pytest.mark.parametrize("op", ["prepare", "migrate"])
def test_an_unknown_declared_encoding_is_refused_in_one_line_not_an_internal_error(host, op):
    hook, config = host
    xml = '<?xml version="1.0" encoding="EBCDIC-US"?>\n' + domain_xml("web1", nics='<vfp:nic id="net0" pool="i350"/>')
    result = run_hook(hook, "web1", op, "begin", xml, config)
    assert result.status == 1
    assert "internal error" not in result.stderr and "encoding 'EBCDIC-US'" in result.stderr
    assert result.stderr.count("\n") == 1


def test_vfctl_rewrite_of_a_latin1_document_writes_latin1(host, tmp_path):
    _, config = host
    text = "<?xml version='1.0' encoding='ISO-8859-1'?>\n" + domain_xml(
        "caf\xe9", uuid=UUID, nics='<vfp:nic id="net0" pool="i350"/>'
    )
    source = tmp_path / "latin1.xml"
    source.write_bytes(text.encode("latin-1"))
    argv = ["--config", str(config), "rewrite", str(source)]
    done = subprocess.run([sys.executable, "-m", "vfplugin.cli", *argv], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    assert b"<name>caf\xe9</name>" in done.stdout and b"ua-vfplugin-net0" in done.stdout


def test_migrate_begin_of_a_latin1_document_answers_a_domain_libvirt_reads(host):
    hook, config = host
    text = "<?xml version='1.0' encoding='ISO-8859-1'?>\n" + domain_xml(
        "caf\xe9", uuid=UUID, nics='<vfp:nic id="net0" pool="i350"/>'
    )
    env = {"LC_ALL": "C", "PATH": LIBVIRT_PATH, "VFPLUGIN_CONFIG": str(config)}
    done = subprocess.run([str(hook), "cafe", "migrate", "begin", "-"], input=text.encode("latin-1"),
                          capture_output=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode("utf-8")  # libvirt reads the answer as UTF-8 text
    assert "<name>caf\xe9</name>" in out and "ua-vfplugin-net0" in out


@pytest.mark.parametrize(
    "uuid_element",
    [
        f"<uuid>{UUID.replace('-', '').upper()}</uuid>",
        f"<!-- <uuid>11111111-2222-3333-4444-555555555555</uuid> --><uuid>{UUID}</uuid>",
        f"<uuid>\n    {UUID}\n  </uuid>",
    ],
    ids=["no dashes", "a comment first", "blanks"],
)
def test_release_names_the_domain_as_prepare_does(host, uuid_element):
    hook, config = host
    xml = managed("web1", uuid_element)
    assert run_hook(hook, "web1", "prepare", "begin", xml, config).status == 0
    assert [lease.domain_uuid for lease in leases(config)] == [UUID]
    for op, sub in (("started", "begin"), ("stopped", "end"), ("release", "end")):
        assert run_hook(hook, "web1", op, sub, xml, config).status == 0
    assert leases(config) == []


def test_release_gives_back_by_name_when_the_xml_is_unusable_before_its_uuid(host):
    hook, config = host
    assert run_hook(hook, "web1", "prepare", "begin", managed("web1", f"<uuid>{UUID}</uuid>"), config).status == 0
    broken = f"<domain><name>web1</oops><uuid>{UUID}</uuid><metadata xmlns:v='urn:vfplugin:1'/></domain>"
    assert run_hook(hook, "web1", "release", "end", broken, config).status == 0
    assert leases(config) == []


def test_release_by_name_never_frees_another_domains_lease(host):
    hook, config = host
    with Ledger.open(config.parent / "ledger.sqlite3") as ledger:
        ledger.claim("11111111-2222-4333-8444-555555555555", "other", [Want(vf=I350_VF, nic_id="net0")])
    broken = f"<domain><name>web1</oops><uuid>{UUID}</uuid><metadata xmlns:v='urn:vfplugin:1'/></domain>"
    assert run_hook(hook, "web1", "release", "end", broken, config).status == 0
    assert [lease.domain_name for lease in leases(config)] == ["other"]


def test_a_request_whose_namespace_is_a_character_reference_is_never_skipped(host):
    hook, config = host
    xml = domain_xml("web1", nics='<vfp:nic id="net0" pool="i350"/>').replace(
        "urn:vfplugin:1", "urn:vfplugin&#58;1"
    )
    assert "urn:vfplugin:1" not in xml and "hostdev" not in xml
    result = run_hook(hook, "web1", "prepare", "begin", xml, config)
    assert result.status == 1 and "nic 'net0' has no VF chosen yet" in result.stderr


def test_vfctl_rewrite_refuses_an_input_it_would_rewrite_beyond_the_limit(host, tmp_path):
    _, config = host
    from vfplugin.domread import MAX_BYTES

    xml = domain_xml("big", uuid=UUID, nics='<vfp:nic id="net0" pool="i350"/>')
    filler = "<!-- " + "x" * (MAX_BYTES - len(xml) - 100) + " -->"
    source = tmp_path / "big.xml"
    source.write_text(xml.replace("<devices>", filler + "<devices>"))
    assert source.stat().st_size <= MAX_BYTES
    done = vfctl("rewrite", str(source), config=config)
    assert done.returncode != 0 and "above the" in done.stderr and done.stderr.count("\n") == 1
