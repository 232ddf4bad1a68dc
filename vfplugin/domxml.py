"""The domain XML: read a domain's vfplugin request and passed-through devices, write the interfaces it owns.

Owns every read and write of libvirt domain XML in vfplugin. Edits happen in place on the parsed tree, the
way virt-manager's virtinst does it: whatever this module does not know (devices, other metadata, comments,
attribute order, indentation) comes out as it went in, and rewriting twice gives byte-identical output.
It touches only ``<interface>`` elements whose alias is ``ua-vfplugin-<nic id>`` and the ``urn:vfplugin:1``
element of ``<metadata>``. Input is untrusted (the hook reads it from libvirt, ``vfctl`` from a user's file):
a size limit, no DOCTYPE, no entities, no network, and every failure is one ``RequestError`` line.
Pure: no file, no libvirt; imports only lxml and the standard library (the hook parses on every start/stop).
It must never choose a VF (allocator.py does) nor reserve one (ledger.py does).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from lxml import etree

from . import ALIAS_PREFIX, REQUEST_NS
from .addresses import PciAddress, parse_mac, parse_mac_prefix, parse_vlan
from .errors import InvalidValue, RequestError
from .request import NicRequest, parse_request

TYPE_CHECKING = False  # typing.TYPE_CHECKING would import typing: the hook avoids it (bench_hook)
if TYPE_CHECKING:
    from typing import AbstractSet, Optional, Union
    Data = Union[bytes, str]

MAX_BYTES = 4 * 1024 * 1024  # libvirt's own limit for a domain XML is 10 MiB; real ones are a few KiB
MAX_CPU = 16383  # libvirt's cpumask length (VIR_DOMAIN_CPUMASK_LEN) - 1: bounds a "0-4000000000" cpuset

# --- every XML name vfplugin reads or writes, declared once -------------------------------------------------
_NS = {"vfp": REQUEST_NS}
NICS = f"{{{REQUEST_NS}}}nics"  # <metadata><vfp:nics xmlns:vfp="urn:vfplugin:1">
NIC = f"{{{REQUEST_NS}}}nic"  # its <vfp:nic id=".." pool=".." .../> children (attributes: request.ATTRIBUTES)
X_NAME = etree.XPath("string(./name)")
X_UUID = etree.XPath("./uuid")
X_METADATA = etree.XPath("./metadata")
X_NICS = etree.XPath("./metadata/vfp:nics", namespaces=_NS)  # by namespace URI, whatever the prefix
X_DEVICES = etree.XPath("./devices")
X_INTERFACES = etree.XPath("./devices/interface")
X_OWNED = etree.XPath("./devices/*[alias[starts-with(@name, $prefix)]]")  # ua-vfplugin-<id>, any device kind
X_PCI_INTERFACES = etree.XPath("./devices/interface[@type='hostdev'][source/address[@type='pci']]")
X_PCI_HOSTDEVS = etree.XPath("./devices/hostdev[@mode='subsystem'][@type='pci'][source/address]")
X_MACS = etree.XPath("./devices/interface/mac/@address")
X_NODESET = etree.XPath("string(./numatune/memory/@nodeset)")
X_CPUSET = etree.XPath("string(./vcpu/@cpuset)")
# Elements written: <domain> children, then the owned interface as libvirt formats it (DESIGN.md section 3).
# <vlan> has no qos in libvirt's schema (networkcommon.rng "vlan"): a qos priority is set through netlink.
DOMAIN, NAME, UUID, METADATA, DEVICES = "domain", "name", "uuid", "metadata", "devices"
IFACE, MAC, SOURCE, ADDRESS = "interface", "mac", "source", "address"
VLAN, TAG, ALIAS = "vlan", "tag", "alias"
# Attributes: <interface type='hostdev' managed='yes'>, <mac address>, <tag id>, <alias name>, <vfp:nic id>
IFACE_ATTRS = {"type": "hostdev", "managed": "yes"}
MAC_ADDRESS, TAG_ID, ALIAS_NAME, NIC_ID = "address", "id", "name", "id"
# Where libvirt itself writes <metadata>: after these (domain_conf.c, virDomainDefFormatInternal).
METADATA_AFTER = (NAME, UUID, "genid", "title", "description")

_SAFE_PARSER = dict(
    resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False,
    remove_blank_text=False, remove_comments=False, remove_pis=False, strip_cdata=False,
)

_FOREIGN_ENCODING = re.compile(rb"""encoding\s*=\s*["'](?!utf-?8["'])""", re.IGNORECASE)


@dataclass(frozen=True)
class HostdevRef:
    """A PCI device the domain passes through: an ``<interface type='hostdev'>`` or a ``<hostdev>``."""

    address: PciAddress
    kind: str  # "interface" | "hostdev"
    nic_id: Optional[str]  # from the alias ua-vfplugin-<id>; None for a hand-written device
    mac: Optional[str]
    vlan: Optional[int]


@dataclass(frozen=True)
class NumaHint:
    """Where the domain is pinned: ``<numatune><memory nodeset>`` nodes, ``<vcpu cpuset>`` CPUs (or empty)."""

    nodeset: frozenset[int]
    cpuset: frozenset[int]


def parse_domain(data: Data, source: str = "<stdin>") -> Domain:
    """Parse and validate a domain XML, its request and its passed-through devices; RequestError if bad."""

    def fail(problem: str) -> RequestError:
        return RequestError(source=source, problem=problem)

    if len(data) > MAX_BYTES:  # before encoding or parsing anything: a str has at most as many chars as bytes
        raise fail(f"input is {len(data)} bytes, above the {MAX_BYTES}-byte limit for a domain XML")
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_BYTES:
        raise fail(f"input is {len(raw)} bytes, above the {MAX_BYTES}-byte limit for a domain XML")
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\0" in raw[:4]:
        raise fail("not UTF-8 text (libvirt writes domain XML in UTF-8)")
    declaration, problem = _prolog(raw)
    if problem:
        raise fail(problem)
    if isinstance(data, str) and declaration and _FOREIGN_ENCODING.search(declaration):
        raise fail("text whose XML declaration names an encoding other than UTF-8: pass the raw bytes")
    parser = etree.XMLParser(**_SAFE_PARSER)
    try:
        root = etree.fromstring(raw, parser)
    except etree.XMLSyntaxError as e:
        # This parser's first error is the cause ("tag mismatch at line 6"); later ones are its consequences.
        # (e.error_log is the thread's log: it also holds earlier documents' errors.)
        first = parser.error_log[0] if len(parser.error_log) else None
        line, column = (first.line, first.column) if first else (e.lineno, e.offset)
        message = first.message if first else e.msg
        raise fail(f"malformed XML at line {line}, column {column}: {message}") from None
    tree = root.getroottree()
    if tree.docinfo.internalDTD is not None or tree.docinfo.doctype:
        raise fail("a DOCTYPE is not allowed in a domain XML")
    if any(True for _ in root.iter(etree.Entity)):
        raise fail("entity references are not allowed in a domain XML")
    if root.tag != DOMAIN:
        raise fail(f"the root element is <{root.tag}>, expected <domain>")
    domain = Domain(root, source, declaration, raw.endswith(b"\n"))
    if not domain.name:
        raise fail("the domain has no <name>")
    try:
        _ = domain.uuid
    except ValueError as e:
        raise fail(str(e)) from None
    aliases: set[str] = set()
    for element in X_OWNED(root, prefix=ALIAS_PREFIX):
        alias = element.find(ALIAS).get(ALIAS_NAME)
        if alias in aliases:
            raise fail(f"alias {alias!r} is on two devices; libvirt aliases are unique")
        aliases.add(alias)
    domain.requests()  # validate eagerly: after parse_domain, reading never raises
    domain.hostdevs()
    domain.numa_hint()
    return domain


def _prolog(raw: bytes) -> tuple[Optional[bytes], Optional[str]]:
    """The XML declaration with the blank after it (verbatim, or None); a problem if there is a DOCTYPE.

    Scanned by hand before lxml sees the text: lxml would read an internal subset and its entity declarations
    (billion laughs) even with resolve_entities=False; a DOCTYPE can only stand in the prolog.
    """
    pos = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
    declaration = None
    if raw.startswith(b"<?xml", pos) and raw[pos + 5 : pos + 6].isspace():
        end = raw.find(b"?>", pos)
        if end < 0:
            return None, "malformed XML at line 1: unterminated XML declaration"
        start, pos = pos, end + 2
        while pos < len(raw) and raw[pos : pos + 1].isspace():
            pos += 1
        declaration = raw[start:pos]
    while True:
        while pos < len(raw) and raw[pos : pos + 1].isspace():
            pos += 1
        if raw.startswith(b"<!--", pos):
            end, close = raw.find(b"-->", pos + 4), 3
        elif raw.startswith(b"<?", pos):
            end, close = raw.find(b"?>", pos + 2), 2
        elif raw[pos : pos + 9].upper() == b"<!DOCTYPE":
            return declaration, "a DOCTYPE (with its entity declarations) is not allowed in a domain XML"
        else:
            return declaration, None
        if end < 0:
            return declaration, None  # unterminated: lxml reports it with its line number
        pos = end + close


def _canonical_uuid(text: str) -> str:
    digits = text.replace("-", "").lower()
    if len(digits) != 32 or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError(f"<uuid> {text!r} is not a UUID")
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def parse_nodeset(text: str, what: str) -> frozenset[int]:
    """libvirt's bitmap syntax (``0-3,^2,8``): numbers, ranges, and ``^N`` to exclude one (virbitmap.c)."""
    # Bit masks, not sets: a hostile "0-16383,0-16383,..." costs one big-int OR per range, not 16384 adds.
    include = exclude = 0
    for part in text.split(","):
        item = part.strip()
        try:
            if item.startswith("^"):
                exclude |= 1 << _bounded(item[1:])
            elif "-" in item:
                low, high = (_bounded(x) for x in item.split("-", 1))
                if low > high:
                    raise ValueError(item)
                include |= ((1 << (high - low + 1)) - 1) << low
            else:
                include |= 1 << _bounded(item)
        except ValueError:
            raise InvalidValue(what=what, value=text, problem="expected a list like 0-3,^2,8") from None
    mask = include & ~exclude
    return frozenset(i for i in range(mask.bit_length()) if mask >> i & 1)


def _bounded(text: str) -> int:
    value = int(text.strip(), 10)
    if not 0 <= value <= MAX_CPU:
        raise ValueError(text)
    return value


class Domain:
    """One parsed domain XML; reads go through the tree, writes edit it in place."""

    def __init__(
        self, root: etree._Element, source: str, declaration: Optional[bytes], newline: bool
    ) -> None:
        self._root = root
        self.source = source
        self._declaration = declaration
        self._newline = newline
        # The document's indentation step, from <domain>'s first child; None: a one-line document, keep it so.
        first = root.text or ""
        self._unit: Optional[str] = first.rsplit("\n", 1)[1] if "\n" in first and not first.strip() else None

    def _fail(self, problem: str) -> RequestError:
        return RequestError(source=self.source, problem=problem)

    # --- reading --------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(X_NAME(self._root)).strip()

    @property
    def uuid(self) -> Optional[str]:
        """The UUID in libvirt's canonical form (lower case, dashed): generated MACs derive from it."""
        found = X_UUID(self._root)
        text = (found[0].text or "").strip() if found else ""
        return _canonical_uuid(text) if text else None

    def _nic_elements(self) -> Iterator[etree._Element]:
        containers = X_NICS(self._root)
        if len(containers) > 1:
            raise self._fail(f"<metadata> has {len(containers)} <nics> elements of {REQUEST_NS}; keep one")
        for container in containers:
            for child in container:
                if not isinstance(child.tag, str):
                    continue  # comments and processing instructions
                if child.tag != NIC:
                    name = etree.QName(child).localname
                    raise self._fail(f"unexpected <{name}> in <nics>: only <nic> is known")
                yield child

    def requests(self) -> tuple[NicRequest, ...]:
        """The domain's ``<vfp:nic>`` requests, validated (duplicate ids, VFs or MACs are refused)."""
        nics: list[NicRequest] = []
        by_id: dict[str, NicRequest] = {}
        by_vf: dict[str, NicRequest] = {}
        by_mac: dict[str, NicRequest] = {}
        for index, element in enumerate(self._nic_elements(), 1):
            label = repr(element.get(NIC_ID)) if element.get(NIC_ID) else f"#{index}"
            try:
                nic = parse_request(dict(element.attrib))
            except InvalidValue as e:
                text = str(e)  # request.py may name the nic already ("nic 'net0' 'pool,pf' is invalid")
                text = text if text.startswith(f"nic {label} ") else f"nic {label}: {text}"
                raise self._fail(text) from None
            if nic.id in by_id:
                raise self._fail(f"nic id {nic.id!r} is used twice; give each <nic> its own id")
            other = by_vf.get(nic.value) if nic.selector == "vf" else None
            if other is not None:
                raise self._fail(f"nics {other.id!r} and {nic.id!r} both ask for VF {nic.value}")
            other = by_mac.get(nic.mac) if nic.mac else None
            if other is not None:
                raise self._fail(f"nics {other.id!r} and {nic.id!r} both ask for MAC {nic.mac}")
            by_id[nic.id] = nic
            if nic.selector == "vf":
                by_vf[nic.value] = nic
            if nic.mac:
                by_mac[nic.mac] = nic
            nics.append(nic)
        return tuple(nics)

    def has_request(self) -> bool:
        return any(True for _ in self._nic_elements())

    def hostdevs(self) -> tuple[HostdevRef, ...]:
        """Every PCI device passed through, in document order of each kind (interfaces first)."""
        refs: list[HostdevRef] = []
        kinds = (("interface", X_PCI_INTERFACES), ("hostdev", X_PCI_HOSTDEVS))
        for kind, elements in ((k, xpath(self._root)) for k, xpath in kinds):
            for element in elements:
                address_element = element.find(f"{SOURCE}/{ADDRESS}")
                try:
                    address = PciAddress.from_libvirt(dict(address_element.attrib))
                    mac_element = element.find(MAC)
                    mac_text = mac_element.get(MAC_ADDRESS) if mac_element is not None else None
                    mac = parse_mac(mac_text) if mac_text else None
                    tag = element.find(f"{VLAN}/{TAG}")
                    vlan = parse_vlan(tag.get(TAG_ID)) if tag is not None else None
                except InvalidValue as e:
                    raise self._fail(f"<{kind}> at line {element.sourceline}: {e}") from None
                refs.append(HostdevRef(address, kind, self._nic_id(element), mac, vlan))
        seen: dict[PciAddress, HostdevRef] = {}
        for ref in refs:
            if ref.address in seen:
                raise self._fail(f"PCI device {ref.address} is passed through twice")
            seen[ref.address] = ref
        return tuple(refs)

    @staticmethod
    def _nic_id(element: etree._Element) -> Optional[str]:
        alias = element.find(ALIAS)
        name = alias.get(ALIAS_NAME, "") if alias is not None else ""
        return name[len(ALIAS_PREFIX) :] if name.startswith(ALIAS_PREFIX) else None

    def numa_hint(self) -> NumaHint:
        def bitmap(xpath: etree.XPath, what: str) -> frozenset[int]:
            text = str(xpath(self._root)).strip()
            try:
                return parse_nodeset(text, what) if text else frozenset()
            except InvalidValue as e:
                raise self._fail(str(e)) from None

        return NumaHint(bitmap(X_NODESET, "numatune nodeset"), bitmap(X_CPUSET, "vcpu cpuset"))

    def macs(self, except_nic: Optional[str] = None) -> frozenset[str]:
        """The MAC of every ``<interface>`` (any type), except the one owned by ``except_nic``."""
        owned = self._owned(except_nic) if except_nic else None
        return frozenset(
            str(m).lower() for m in X_MACS(self._root)
            if owned is None or m.getparent().getparent() is not owned
        )

    def _owned(self, nic_id: str) -> Optional[etree._Element]:
        """The device vfplugin owns for ``nic_id`` (alias ua-vfplugin-<id>), if any."""
        alias = ALIAS_PREFIX + nic_id
        owned = X_OWNED(self._root, prefix=ALIAS_PREFIX)
        return next((e for e in owned if e.find(ALIAS).get(ALIAS_NAME) == alias), None)

    # --- writing --------------------------------------------------------------------------------------------
    def set_uuid(self, value: str) -> None:
        """Give a domain without ``<uuid>`` one (libvirt would make one at define); never changes one."""
        try:
            value = _canonical_uuid(value)
        except ValueError as e:
            raise self._fail(str(e)) from None
        if self.uuid is not None:
            if self.uuid != value:
                raise self._fail(f"the domain already has uuid {self.uuid}")
            return
        element = etree.Element(UUID)
        element.text = value
        name = self._root.find(NAME)
        if name is not None:
            self._insert_after(name, element)
        else:
            self._insert_first(self._root, element)

    def materialize(self, nic: NicRequest, address: PciAddress, mac: str) -> None:
        """Insert, or update in place, the interface that passes VF ``address`` to ``nic``.

        An existing owned interface keeps its position and whatever libvirt added to it (guest ``<address>``,
        ``<driver>``, ``<rom>``, ``<teaming>``...); a new one goes after the last ``<interface>``.
        """
        try:
            mac = parse_mac(mac)
        except InvalidValue as e:
            raise self._fail(f"nic {nic.id!r}: {e}") from None
        for ref in self.hostdevs():  # check everything before changing anything
            if ref.address == address and ref.nic_id != nic.id:
                holder = f"nic {ref.nic_id!r}" if ref.nic_id else f"a hand-written <{ref.kind}>"
                raise self._fail(f"VF {address} for nic {nic.id!r} is already passed through by {holder}")
        if mac in self.macs(except_nic=nic.id):
            raise self._fail(f"MAC {mac} for nic {nic.id!r} is already used by another <interface>")
        element = self._owned(nic.id)
        if element is None:
            self._insert_interface(_interface(nic, address, mac))
            return
        if element.tag != IFACE:  # a <hostdev> someone gave our alias: becomes the interface it stands for
            self._put(element.getparent(), element, _interface(nic, address, mac), after=None)
            return
        for key, value in IFACE_ATTRS.items():
            element.set(key, value)
        mac_element = element.find(MAC)
        if mac_element is None:
            mac_element = etree.Element(MAC)
            self._insert_first(element, mac_element)
        mac_element.set(MAC_ADDRESS, mac)
        source = element.find(SOURCE)
        address_elements = [c for c in source if isinstance(c.tag, str)] if source is not None else []
        if source is None or source.attrib or [c.tag for c in address_elements] != [ADDRESS]:
            self._put(element, source, _source(address), after=mac_element)
        else:
            old = address_elements[0]
            for key in [k for k in old.attrib if k not in address.libvirt_attrs()]:
                del old.attrib[key]
            for key, value in address.libvirt_attrs().items():
                old.set(key, value)
        vlan = element.find(VLAN)
        tags = [c for c in vlan if isinstance(c.tag, str)] if vlan is not None else []
        if nic.vlan is None:
            if vlan is not None:
                self._remove(vlan)
        elif vlan is None or vlan.attrib or [c.tag for c in tags] != [TAG]:
            self._put(element, vlan, _vlan(nic.vlan), after=element.find(SOURCE))
        else:
            tags[0].attrib.clear()
            tags[0].set(TAG_ID, str(nic.vlan))

    def drop_interface(self, nic_id: str) -> None:
        """Remove the device owned by ``nic_id``; nothing else. A no-op when there is none."""
        element = self._owned(nic_id)
        if element is not None:
            self._remove(element)

    def drop_stale(self) -> tuple[str, ...]:
        """Remove every device vfplugin owns whose nic is no longer requested; returns those nic ids."""
        wanted = {nic.id for nic in self.requests()}
        stale = []
        for element in X_OWNED(self._root, prefix=ALIAS_PREFIX):
            nic_id = self._nic_id(element)
            if nic_id is not None and nic_id not in wanted:
                self._remove(element)
                stale.append(nic_id)
        return tuple(stale)

    def set_request(self, nic: NicRequest) -> None:
        """Add ``nic`` to the metadata request, or replace the ``<vfp:nic>`` with its id in place."""
        for element in self._nic_elements():
            if element.get(NIC_ID) == nic.id:
                element.attrib.clear()
                for key, value in nic.attributes().items():
                    element.set(key, value)
                return
        containers = X_NICS(self._root)
        if containers:
            container = containers[0]
        else:
            metadata = next(iter(X_METADATA(self._root)), None)
            if metadata is None:
                metadata = etree.Element(METADATA)
                anchor = None
                for child in self._root:
                    if child.tag in METADATA_AFTER:
                        anchor = child
                if anchor is not None:
                    self._insert_after(anchor, metadata)
                else:
                    self._insert_first(self._root, metadata)
            container = etree.Element(NICS, nsmap={"vfp": REQUEST_NS})
            self._append(metadata, container)
        self._append(container, etree.Element(NIC, nic.attributes()))

    def drop_request(self, nic_id: str) -> None:
        """Remove the ``<vfp:nic>`` with this id (and ``<vfp:nics>`` once empty); a no-op when absent."""
        for element in list(self._nic_elements()):
            if element.get(NIC_ID) == nic_id:
                container = element.getparent()
                self._remove(element)
                if not any(isinstance(c.tag, str) for c in container):
                    self._remove(container)

    def to_bytes(self) -> bytes:
        """The document, with the XML declaration as it was (or none); UTF-8 unless it names another."""
        encoding = self._root.getroottree().docinfo.encoding if self._declaration else "UTF-8"
        # Top-level comments and PIs one per line, as libvirt writes its "WARNING: auto-generated" comment.
        before = reversed(list(self._root.itersiblings(preceding=True)))
        nodes = [*before, self._root, *self._root.itersiblings()]
        body = b"\n".join(
            etree.tostring(node, encoding=encoding, xml_declaration=False, with_tail=False) for node in nodes
        )
        if self._declaration is not None:
            body = self._declaration + body
        return body + b"\n" if self._newline else body

    # --- whitespace-preserving tree edits -------------------------------------------------------------------
    # The whitespace before an element is its previous sibling's tail (or its parent's text); inserted
    # elements copy the indentation of their neighbours, one step (self._unit) deeper for their children.
    def _indent_of(self, element: etree._Element) -> Optional[str]:
        if element.getparent() is None:
            return "\n"
        previous = element.getprevious()
        text = previous.tail if previous is not None else element.getparent().text
        if self._unit is None or not text or text.strip() or "\n" not in text:
            return None
        return "\n" + text.rsplit("\n", 1)[1]

    def _child_indent(self, parent: etree._Element) -> Optional[str]:
        if len(parent):
            return self._indent_of(parent[0])
        own = self._indent_of(parent)
        return own + self._unit if own is not None and self._unit is not None else None

    def _format(self, element: etree._Element, indent: Optional[str]) -> None:
        if indent is None or self._unit is None or not len(element):
            return
        inner = indent + self._unit
        element.text = inner
        for child in element:
            child.tail = inner
            self._format(child, inner)
        element[-1].tail = indent

    def _append(self, parent: etree._Element, element: etree._Element) -> None:
        indent = self._child_indent(parent)
        if len(parent):
            self._insert_after(parent[-1], element)
            return
        own = self._indent_of(parent)
        parent.append(element)
        if indent is not None and own is not None:
            parent.text, element.tail = indent, own
        self._format(element, indent)

    def _insert_after(self, anchor: etree._Element, element: etree._Element) -> None:
        indent = self._indent_of(anchor)
        parent = anchor.getparent()
        tail = anchor.tail
        # parent.insert, not anchor.addnext: addnext slips the new element between the anchor and its tail.
        parent.insert(parent.index(anchor) + 1, element)
        element.tail = tail
        if indent is not None:
            anchor.tail = indent
        self._format(element, indent)

    def _insert_first(self, parent: etree._Element, element: etree._Element) -> None:
        if not len(parent):
            self._append(parent, element)
            return
        indent = self._indent_of(parent[0])
        parent.insert(0, element)
        element.tail = parent.text if indent is not None else None
        self._format(element, indent)

    def _put(
        self,
        parent: etree._Element,
        old: Optional[etree._Element],
        new: etree._Element,
        after: Optional[etree._Element],
    ) -> None:
        """Replace ``old`` by ``new`` in place, or insert ``new`` after ``after`` (first when None)."""
        if old is not None:
            indent, tail = self._indent_of(old), old.tail
            parent.replace(old, new)
            new.tail = tail
            self._format(new, indent)
        elif after is not None:
            self._insert_after(after, new)
        else:
            self._insert_first(parent, new)

    def _insert_interface(self, element: etree._Element) -> None:
        interfaces = X_INTERFACES(self._root)
        if interfaces:
            self._insert_after(interfaces[-1], element)
            return
        devices = next(iter(X_DEVICES(self._root)), None)
        if devices is None:
            devices = etree.Element(DEVICES)
            self._append(self._root, devices)
        self._append(devices, element)

    def _remove(self, element: etree._Element) -> None:
        # lxml removes an element's tail with it: hand that whitespace to what preceded the element, so the
        # closing tag of the parent keeps its indentation.
        parent = element.getparent()
        previous = element.getprevious()
        before = previous.tail if previous is not None else parent.text
        if before is None or not before.strip():
            before = element.tail
        else:
            before += element.tail or ""
        if previous is not None:
            previous.tail = before
        else:
            parent.text = before
        parent.remove(element)
        if not len(parent) and parent.text is not None and not parent.text.strip():
            parent.text = None  # <metadata/>, not a tag pair around blank lines


def _source(address: PciAddress) -> etree._Element:
    source = etree.Element(SOURCE)
    etree.SubElement(source, ADDRESS, address.libvirt_attrs())
    return source


def _vlan(vlan: int) -> etree._Element:
    element = etree.Element(VLAN)
    etree.SubElement(element, TAG, {TAG_ID: str(vlan)})
    return element


def _interface(nic: NicRequest, address: PciAddress, mac: str) -> etree._Element:
    element = etree.Element(IFACE, IFACE_ATTRS)
    etree.SubElement(element, MAC, {MAC_ADDRESS: mac})
    element.append(_source(address))
    if nic.vlan is not None:
        element.append(_vlan(nic.vlan))
    etree.SubElement(element, ALIAS, {ALIAS_NAME: nic.alias})
    return element


def interface_xml(nic: NicRequest, address: PciAddress, mac: str) -> str:
    """The owned interface as a standalone element (``virsh attach-device``/``detach-device`` text)."""
    element = _interface(nic, address, parse_mac(mac))
    etree.indent(element, space="  ")
    return etree.tostring(element, encoding="unicode") + "\n"


def generate_mac(prefix: str, domain_uuid: str, nic_id: str, taken: AbstractSet[str]) -> str:
    """A MAC stable for (domain, nic): ``prefix`` + the first bytes of sha256(uuid, nic id, counter).

    The prefix keeps the first octet (unicast/locally-administered bits are the prefix's). When the address
    is in ``taken`` the counter goes up: the result is still deterministic, and never a taken MAC.
    """
    import hashlib  # deferred: ~2 ms of OpenSSL loading the hook's start/stop path never needs

    octets = parse_mac_prefix(prefix).split(":")
    taken_lower = {m.lower() for m in taken}
    uuid = domain_uuid.strip().lower()
    for counter in range(1 << 16):
        digest = hashlib.sha256(f"{uuid}\0{nic_id}\0{counter}".encode()).digest()
        mac = ":".join(octets + [f"{b:02x}" for b in digest[: 6 - len(octets)]])
        if mac not in taken_lower and mac != "00:00:00:00:00:00":
            return mac
    raise InvalidValue(what="MAC prefix", value=prefix, problem="every address under it is taken")

