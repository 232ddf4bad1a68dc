"""The domain XML rewriter: write the interfaces vfplugin owns and its request, in place (lxml).

Owns every write of libvirt domain XML in vfplugin. Edits happen in place on the parsed tree, the way
virt-manager's virtinst does it: whatever this module does not know (devices, other metadata, comments,
attribute order, indentation) comes out as it went in, and rewriting twice gives byte-identical output.
It touches only ``<interface>`` elements whose alias is ``ua-vfplugin-<nic id>`` and the ``urn:vfplugin:1``
element of ``<metadata>``. Reading is domread's: a ``Domain``'s facts come from domread.Reader walking this
tree, so ``vfctl`` and the hook (which reads with expat) see the same domain. Input is untrusted (``vfctl``
reads users' files, the hook's migrate/restore what libvirt hands it): domread's screening (size limit, no
DOCTYPE) first, then lxml with entities, DTDs and network off; every failure is one ``RequestError`` line.
Pure: no file, no libvirt. It must never choose a VF (allocator.py does) nor reserve one (ledger.py does).
"""

from __future__ import annotations

from collections.abc import Iterator

from lxml import etree

from . import ALIAS_PREFIX, REQUEST_NS
from .addresses import PciAddress, canonical_uuid, parse_mac, parse_mac_prefix
from .domread import (
    ADDRESS,
    ALIAS,
    ALIAS_NAME,
    DEVICES,
    IFACE,
    MAC,
    MAC_ADDRESS,
    MAX_BYTES,
    METADATA,
    NAME,
    NIC,
    NIC_ID,
    NICS,
    SOURCE,
    TAG,
    TAG_ID,
    UTF8_NAMES,
    UUID,
    VLAN,
    DomainFacts,
    HostdevRef,
    NumaHint,
    Reader,
    declared_encoding,
    parse_nodeset,
    read_domain,
    screen,
)
from .errors import InvalidValue, RequestError
from .request import NicRequest

TYPE_CHECKING = False  # typing.TYPE_CHECKING would import typing: the hook avoids it (bench_hook)
if TYPE_CHECKING:
    from typing import AbstractSet, Union
    Data = Union[bytes, str]

__all__ = ["MAX_BYTES", "Domain", "DomainFacts", "HostdevRef", "NumaHint", "parse_domain", "parse_nodeset"]

# --- the XPaths of the edits (domread.py declares every name it reads) --------------------------------------
_NS = {"vfp": REQUEST_NS}
X_METADATA = etree.XPath("./metadata")
X_NICS = etree.XPath("./metadata/vfp:nics", namespaces=_NS)  # by namespace URI, whatever the prefix
X_DEVICES = etree.XPath("./devices")
X_INTERFACES = etree.XPath("./devices/interface")
# ua-vfplugin-<id>, any device kind; the first <alias> counts, as in domread.Reader
X_OWNED = etree.XPath("./devices/*[alias[1][starts-with(@name, $prefix)]]")
X_MACS = etree.XPath("./devices/interface/mac/@address")
# Elements written: the owned interface as libvirt formats it (DESIGN.md section 3).
# <vlan> has no qos in libvirt's schema (networkcommon.rng "vlan"): a qos priority is set through netlink.
# Attributes: <interface type='hostdev' managed='yes'>
IFACE_ATTRS = {"type": "hostdev", "managed": "yes"}
# Where libvirt itself writes <metadata>: after these (domain_conf.c, virDomainDefFormatInternal).
METADATA_AFTER = (NAME, UUID, "genid", "title", "description")

_SAFE_PARSER = dict(
    resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False,
    remove_blank_text=False, remove_comments=False, remove_pis=False, strip_cdata=False,
)

# libxml2 reports a namespace name it does not take for a URI ("xmlns:x: '%%' is not a valid URI") as an error,
# and lxml then refuses the document; it is well-formed, libvirt (libxml2 without lxml) and expat read it.
_NS_URI_WARNINGS = frozenset({"WAR_NS_URI", "WAR_NS_URI_RELATIVE"})


def parse_domain(data: Data, source: str = "<stdin>") -> Domain:
    """Parse and validate a domain XML, its request and its passed-through devices; RequestError if bad."""

    def fail(problem: str) -> RequestError:
        return RequestError(source=source, problem=problem)

    if len(data) > MAX_BYTES:  # before encoding anything: a str has at most as many chars as bytes
        raise fail(f"input is {len(data)} bytes, above the {MAX_BYTES}-byte limit for a domain XML")
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    # The hook's reader first (screening included): what it refuses, the rewriter refuses with the same line,
    # so the two never disagree on a document that one of them reads (element names libxml2 takes and expat
    # does not, e.g. with a U+FEFF).
    read_domain(raw, source)
    declaration = screen(raw, source)  # cheap; read_domain has passed it already
    encoding = declared_encoding(declaration) if declaration else None
    if isinstance(data, str) and encoding and encoding.lower() not in UTF8_NAMES:
        raise fail(f"text whose XML declaration names encoding {encoding!r}: pass the raw bytes")
    parser = etree.XMLParser(**_SAFE_PARSER)
    try:
        try:
            root = etree.fromstring(raw, parser)
        except etree.XMLSyntaxError:
            if not parser.error_log or any(e.type_name not in _NS_URI_WARNINGS for e in parser.error_log):
                raise
            parser = etree.XMLParser(recover=True, **_SAFE_PARSER)
            root = etree.fromstring(raw, parser)
            if root is None or any(e.type_name not in _NS_URI_WARNINGS for e in parser.error_log):
                raise etree.XMLSyntaxError("not well-formed", None, 1, 1) from None
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
    output = "UTF-8" if encoding is None or encoding.lower() in UTF8_NAMES else encoding
    domain = Domain(root, source, declaration, raw.endswith(b"\n"), output)
    _ = domain.facts  # validate eagerly: after parse_domain, reading never raises
    return domain


def _walk(element: etree._Element, reader: Reader) -> None:
    """Feed ``reader`` the events an expat parse of this element would give (comments and PIs left out)."""
    reader.start(element.tag, element.attrib, element.sourceline)
    if element.text:
        reader.text(element.text)
    for child in element:
        if isinstance(child.tag, str):
            _walk(child, reader)
        if child.tail:
            reader.text(child.tail)
    reader.end()


class Domain:
    """One parsed domain XML: reads come from ``facts`` (domread.Reader over the tree), writes edit the tree."""

    def __init__(
        self, root: etree._Element, source: str, declaration: bytes | None, newline: bool, encoding: str = "UTF-8"
    ) -> None:
        self._root = root
        self.encoding = encoding  # of the input, and so of to_bytes(): the declaration stays as it was
        self.source = source
        self._declaration = declaration
        self._newline = newline
        # The document's indentation step, from <domain>'s first child; None: a one-line document, keep it so.
        first = root.text or ""
        self._unit: str | None = first.rsplit("\n", 1)[1] if "\n" in first and not first.strip() else None

    def _fail(self, problem: str) -> RequestError:
        return RequestError(source=self.source, problem=problem)

    # --- reading --------------------------------------------------------------------------------------------
    @property
    def facts(self) -> DomainFacts:
        """Name, UUID, requests, passed-through devices and NUMA pinning, read as the hook reads them.

        Read from the tree on every call (a walk of a few hundred elements): never stale after an edit."""
        reader = Reader(self.source)
        _walk(self._root, reader)
        return reader.facts()

    @property
    def name(self) -> str:
        return self.facts.name

    @property
    def uuid(self) -> str | None:
        return self.facts.uuid

    def requests(self) -> tuple[NicRequest, ...]:
        return self.facts.requests

    def has_request(self) -> bool:
        return bool(self.facts.requests)

    def hostdevs(self) -> tuple[HostdevRef, ...]:
        return self.facts.hostdevs

    def numa_hint(self) -> NumaHint:
        return self.facts.numa

    def _nic_elements(self) -> Iterator[etree._Element]:
        """The ``<vfp:nic>`` elements (facts has validated them: one container, only <nic> children)."""
        for container in X_NICS(self._root):
            yield from (child for child in container if child.tag == NIC)

    @staticmethod
    def _nic_id(element: etree._Element) -> str | None:
        alias = element.find(ALIAS)
        name = alias.get(ALIAS_NAME, "") if alias is not None else ""
        return name[len(ALIAS_PREFIX) :] if name.startswith(ALIAS_PREFIX) else None

    def macs(self, except_nic: str | None = None) -> frozenset[str]:
        """The MAC of every ``<interface>`` (any type), except the one owned by ``except_nic``."""
        owned = self._owned(except_nic) if except_nic else None
        return frozenset(
            str(m).lower() for m in X_MACS(self._root)
            if owned is None or m.getparent().getparent() is not owned
        )

    def owned_macs(self) -> dict[str, str]:
        """nic id -> the MAC of the device vfplugin owns for it (any interface type), where it has one."""
        out = {}
        for element in X_OWNED(self._root, prefix=ALIAS_PREFIX):
            nic_id, mac = self._nic_id(element), element.find(MAC)
            if nic_id is not None and mac is not None and mac.get(MAC_ADDRESS):
                out[nic_id] = mac.get(MAC_ADDRESS, "").lower()
        return out

    def _owned(self, nic_id: str) -> etree._Element | None:
        """The device vfplugin owns for ``nic_id`` (alias ua-vfplugin-<id>), if any."""
        alias = ALIAS_PREFIX + nic_id
        owned = X_OWNED(self._root, prefix=ALIAS_PREFIX)
        return next((e for e in owned if e.find(ALIAS).get(ALIAS_NAME) == alias), None)

    # --- writing --------------------------------------------------------------------------------------------
    def set_uuid(self, value: str) -> None:
        """Give a domain without ``<uuid>`` one (libvirt would make one at define); never changes one."""
        try:
            value = canonical_uuid(value)
        except ValueError as e:
            raise self._fail(str(e)) from None
        if self.uuid is not None:
            if self.uuid != value:
                raise self._fail(f"the domain already has uuid {self.uuid}")
            return
        blank = self._root.find(UUID)  # <uuid></uuid> or <uuid> </uuid>: the reader takes it for none
        if blank is not None:
            blank.text = value
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

    def materialize_network(self, nic: NicRequest, mac: str) -> None:
        """Insert, or replace in place, the ``<interface type='network'>`` of a ``network=`` nic: libvirt's
        hostdev network picks the VF at start (the network hook guards it). Children libvirt added to an
        existing one (guest ``<address>``, ``<driver>``...) are kept."""
        try:
            mac = parse_mac(mac)
        except InvalidValue as e:
            raise self._fail(f"nic {nic.id!r}: {e}") from None
        if mac in self.macs(except_nic=nic.id):
            raise self._fail(f"MAC {mac} for nic {nic.id!r} is already used by another <interface>")
        new = _network_interface(nic, mac)
        element = self._owned(nic.id)
        if element is None:
            self._insert_interface(new)
            return
        for child in element:
            if isinstance(child.tag, str) and child.tag not in (MAC, SOURCE, VLAN, ALIAS):
                new.insert(len(new) - 1, child)
        self._put(element.getparent(), element, new, after=None)

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
        """The document in its own encoding (``self.encoding``), with the XML declaration as it was.

        RequestError if it came out above MAX_BYTES: vfplugin never writes what it would refuse to read."""
        # Top-level comments and PIs one per line, as libvirt writes its "WARNING: auto-generated" comment.
        before = reversed(list(self._root.itersiblings(preceding=True)))
        nodes = [*before, self._root, *self._root.itersiblings()]
        body = b"\n".join(
            etree.tostring(node, encoding=self.encoding, xml_declaration=False, with_tail=False) for node in nodes
        )
        if self._declaration is not None:
            body = self._declaration + body
        if self._newline:
            body += b"\n"
        if len(body) > MAX_BYTES:
            raise self._fail(
                f"the rewritten domain would be {len(body)} bytes, above the {MAX_BYTES}-byte limit for a domain "
                "XML; make the input smaller"
            )
        return body

    def to_text(self) -> str:
        """The document as text, for libvirt's APIs and the hook's stdout (both UTF-8): ``to_bytes()`` decoded,
        or, for a document in another encoding, written in UTF-8 without the declaration that would contradict it."""
        if self.encoding == "UTF-8":
            return self.to_bytes().decode("utf-8")
        return Domain(self._root, self.source, None, self._newline).to_bytes().decode("utf-8")

    # --- whitespace-preserving tree edits -------------------------------------------------------------------
    # The whitespace before an element is its previous sibling's tail (or its parent's text); inserted
    # elements copy the indentation of their neighbours, one step (self._unit) deeper for their children.
    def _indent_of(self, element: etree._Element) -> str | None:
        if element.getparent() is None:
            return "\n"
        previous = element.getprevious()
        text = previous.tail if previous is not None else element.getparent().text
        if self._unit is None or not text or text.strip() or "\n" not in text:
            return None
        return "\n" + text.rsplit("\n", 1)[1]

    def _child_indent(self, parent: etree._Element) -> str | None:
        if len(parent):
            return self._indent_of(parent[0])
        own = self._indent_of(parent)
        return own + self._unit if own is not None and self._unit is not None else None

    def _format(self, element: etree._Element, indent: str | None) -> None:
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
        # Indent like the document, unless the parent holds text (<devices>text</devices>): that stays as it is.
        if indent is not None and own is not None and not (parent.text or "").strip():
            parent.text, element.tail = indent, own
        self._format(element, indent)

    def _insert_after(self, anchor: etree._Element, element: etree._Element) -> None:
        indent = self._indent_of(anchor)
        parent = anchor.getparent()
        tail = anchor.tail
        # parent.insert, not anchor.addnext: addnext slips the new element between the anchor and its tail.
        parent.insert(parent.index(anchor) + 1, element)
        # The anchor's tail moves after the new element, never copied: text after it (<devices><a/>text) once.
        element.tail, anchor.tail = tail, indent
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
        old: etree._Element | None,
        new: etree._Element,
        after: etree._Element | None,
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


def _network_interface(nic: NicRequest, mac: str) -> etree._Element:
    element = etree.Element(IFACE, {"type": "network"})
    etree.SubElement(element, MAC, {MAC_ADDRESS: mac})
    etree.SubElement(element, SOURCE, {"network": nic.value})
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

