"""The lab's domain templates (tests/lab/domains) read as vfplugin and libvirt 9 + QEMU 10 need them.

The lab itself takes minutes under TCG; these checks take milliseconds and catch a broken template (bad XML,
a missing ``<acpi/>``, a request vfplugin would refuse) before anyone boots anything.
"""

from __future__ import annotations

import importlib
import re
import string
import struct
import sys
from pathlib import Path

import pytest
from lxml import etree

from tests.conftest import ROOT
from vfplugin.addresses import PciAddress
from vfplugin.domxml import parse_domain

pytestmark = pytest.mark.pure

DOMAINS = ROOT / "tests" / "lab" / "domains"
TEMPLATES = sorted(DOMAINS.glob("*.xml"))
# What tests/lab/scenario fills in (the lab host's VFs sit on bus 0: QEMU puts igb VFs at PF devfn + 0x80).
VALUES = {
    "name": "l2x",
    "kernel": "/var/lib/libvirt/boot/lab-l2-poweroff.bin",
    "nic": 'pool="lab" vlan="100" trust="on" spoofchk="off" max_tx_rate="100"',
    "pool": "lab",
    "mac": "52:54:00:1a:b0:0c",
    "bus": "0x00",
    "slot": "0x14",
    "function": "0x2",
    "network": "vfnet",
}
SAFE = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)

sys.path.insert(0, str(ROOT / "tests" / "lab"))
import labcheck  # noqa: E402  (tests/lab is not a package: the scenario runs labcheck.py as a script)

power_off = importlib.import_module("l2-poweroff")


def render(path: Path) -> str:
    return string.Template(path.read_text(encoding="utf-8")).substitute(VALUES)


def test_the_lab_has_its_templates():
    names = {p.name for p in TEMPLATES}
    assert {"pool-pc.xml", "pool-q35-hotplug.xml", "stale-choice.xml", "handwritten.xml"} <= names


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_every_placeholder_is_one_the_scenario_fills(path):
    placeholders = set(re.findall(r"\$\{(\w+)\}", path.read_text(encoding="utf-8")))
    assert placeholders and placeholders <= set(VALUES)


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_a_rendered_template_is_a_domain_libvirt_9_with_qemu_10_starts(path):
    domain = etree.fromstring(render(path).encode(), SAFE)
    assert domain.tag == "domain" and domain.get("type") == "qemu"  # TCG inside the TCG lab host
    assert domain.find("features/acpi") is not None  # libvirt 9 passes -no-acpi otherwise: QEMU 10 refuses
    assert domain.find("devices/memballoon").get("model") == "none"
    assert domain.find("memory").get("unit") == "MiB" and int(domain.findtext("memory")) <= 128
    assert domain.find("devices/disk") is None


@pytest.mark.parametrize("name", ["pool-pc.xml", "pool-q35-hotplug.xml", "stale-choice.xml"])
def test_request_templates_carry_a_pool_request_vfplugin_accepts(name):
    nics = parse_domain(render(DOMAINS / name), source=name).requests()
    assert [(n.id, n.selector, n.value) for n in nics] == [("net0", "pool", "lab")]


def test_the_stale_choice_names_the_busy_vf_in_the_interface_vfplugin_owns():
    refs = parse_domain(render(DOMAINS / "stale-choice.xml")).hostdevs()
    assert [(r.kind, r.nic_id, r.address) for r in refs] == [("interface", "net0", PciAddress.parse("0000:00:14.2"))]


def test_the_handwritten_vf_has_no_request_and_is_a_hostdev_interface():
    domain = parse_domain(render(DOMAINS / "handwritten.xml"))
    assert not domain.has_request()
    assert [(r.kind, r.nic_id, r.mac) for r in domain.hostdevs()] == [("interface", None, VALUES["mac"])]


@pytest.mark.parametrize("name", ["pool-pc.xml", "stale-choice.xml", "handwritten.xml"])
def test_pc_domains_boot_the_power_off_image(name):
    domain = etree.fromstring(render(DOMAINS / name).encode(), SAFE)
    assert domain.find("os/type").get("machine") == "pc"  # the image reads the PIIX4 PM base
    assert domain.findtext("os/kernel") == VALUES["kernel"]


def test_the_power_off_image_is_a_multiboot_image_qemu_loads():
    data = power_off.image()
    magic, flags, checksum, header, load, load_end, bss_end, entry = struct.unpack_from("<8I", data)
    assert magic == 0x1BADB002 and (magic + flags + checksum) & 0xFFFFFFFF == 0
    assert flags & 0x10000 and header == load == 0x100000 and load_end == bss_end == 0  # a.out kludge, whole file
    assert entry == load + 32 and len(data) < 8192  # QEMU looks for the header in the first 8 KiB
    # the power-off itself: PM1_CNT (base + 4) = SLP_EN | sleep type 0, QEMU's soft-off
    assert b"\x8d\x53\x04\x66\xb8\x00\x20\x66\xef" in data


def test_the_hotplug_domain_uses_native_pcie_hotplug_with_spare_root_ports():
    # With no guest OS, only a native PCIe unplug from a never-powered slot completes (vfctl detach --live).
    domain = etree.fromstring(render(DOMAINS / "pool-q35-hotplug.xml").encode(), SAFE)
    assert "q35" in domain.find("os/type").get("machine")
    args = [a.get("value") for a in domain.iter("{http://libvirt.org/schemas/domain/qemu/1.0}arg")]
    assert "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off" in args
    assert len(domain.findall("devices/controller[@model='pcie-root-port']")) >= 2
    # libvirt numbers controllers in order: index 0 must be the root complex, declared before the ports
    assert domain.find("devices/controller[@type='pci']").get("model") == "pcie-root"


def test_labcheck_reads_hostdev_interfaces_and_pci_hostdevs(capsys, monkeypatch):
    xml = render(DOMAINS / "stale-choice.xml").replace(
        "</devices>",
        "<hostdev mode='subsystem' type='pci' managed='yes'><source>"
        "<address domain='0x0000' bus='0x00' slot='0x15' function='0x4'/></source></hostdev></devices>",
    )
    monkeypatch.setattr(sys, "stdin", _Stdin(xml.encode()))
    labcheck.cmd_nics(None)
    assert capsys.readouterr().out.splitlines() == [
        "ua-vfplugin-net0 0000:00:14.2 52:54:00:1a:b0:0c -",
        "- 0000:00:15.4 - -",
    ]


class _Stdin:
    def __init__(self, data: bytes) -> None:
        import io

        self.buffer = io.BytesIO(data)
