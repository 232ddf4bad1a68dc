"""Reading a domain XML: the facts vfplugin acts on, validated, from a stream of element events.

Owns what vfplugin reads from libvirt domain XML (its name and UUID, the ``urn:vfplugin:1`` request, the PCI
devices passed through, the NUMA pinning) and the screening every input gets first: a size limit, UTF-8, no
DOCTYPE and so no entity declarations, no network. One ``Reader`` turns element events into ``DomainFacts``;
two sources feed it the same events: ``read_domain`` parses bytes with the standard library's expat (the hook:
importing lxml would cost 20 ms on every start and stop of every VM, bench/bench_hook.py), and domxml walks
its lxml tree (the rewriter, which edits in place). Every failure is one ``RequestError`` line.
Pure: no file, no libvirt. It must never edit XML (domxml.py does) nor choose a VF (allocator.py does).
"""

from __future__ import annotations

from . import ALIAS_PREFIX, REQUEST_NS
from .addresses import PciAddress, canonical_uuid, parse_mac, parse_vlan
from .errors import InvalidValue, RequestError
from .record import Record
from .request import NicRequest, parse_request

TYPE_CHECKING = False  # typing.TYPE_CHECKING would import typing: the hook avoids it (bench_hook)
if TYPE_CHECKING:
    from collections.abc import Mapping

MAX_BYTES = 4 * 1024 * 1024  # libvirt's own limit for a domain XML is 10 MiB; real ones are a few KiB
MAX_DEPTH = 256  # libxml2's default nesting limit (lxml without huge_tree); libvirt's XML is ~6 deep
MAX_CPU = 16383  # libvirt's cpumask length (VIR_DOMAIN_CPUMASK_LEN) - 1: bounds a "0-4000000000" cpuset
# nics one request may ask for: a domain's PCI topology holds a few dozen passed-through devices at most, and
# a bound refused while reading keeps a 10,000-nic request from costing seconds (docs/request-format.md)
MAX_NICS = 64
# The encodings an XML declaration may name (any case): those expat and libxml2 both decode themselves. libvirt
# writes UTF-8; latin-1 and ASCII are for hand-written files. Any other name is refused in one line (expat
# would look it up in Python's codecs: an unknown one raised LookupError, a multi-byte one fails mid-document).
UTF8_NAMES = ("utf-8", "utf8")
ENCODINGS = (*UTF8_NAMES, "iso-8859-1", "us-ascii")

# --- every XML name vfplugin reads, declared once (domxml.py declares what it writes) --------------------
DOMAIN, NAME, UUID, METADATA, DEVICES = "domain", "name", "uuid", "metadata", "devices"
NICS = f"{{{REQUEST_NS}}}nics"  # <metadata><vfp:nics xmlns:vfp="urn:vfplugin:1">, whatever the prefix
NIC = f"{{{REQUEST_NS}}}nic"  # its <vfp:nic id=".." pool=".." .../> children (attributes: request.ATTRIBUTES)
NIC_ID = "id"
IFACE, HOSTDEV = "interface", "hostdev"  # <interface type='hostdev'>, <hostdev mode='subsystem' type='pci'>
MAC, SOURCE, ADDRESS, VLAN, TAG, ALIAS = "mac", "source", "address", "vlan", "tag", "alias"
MAC_ADDRESS, TAG_ID, ALIAS_NAME = "address", "id", "name"
NUMATUNE, MEMORY, NODESET, VCPU, CPUSET = "numatune", "memory", "nodeset", "vcpu", "cpuset"


class HostdevRef(Record):
    """A PCI device the domain passes through: an ``<interface type='hostdev'>`` or a ``<hostdev>``."""

    address: PciAddress
    kind: str  # "interface" | "hostdev"
    nic_id: str | None  # from the alias ua-vfplugin-<id>; None for a hand-written device
    mac: str | None
    vlan: int | None


class NumaHint(Record):
    """Where the domain is pinned: ``<numatune><memory nodeset>`` nodes, ``<vcpu cpuset>`` CPUs (or empty)."""

    nodeset: frozenset[int]
    cpuset: frozenset[int]


class DomainFacts(Record):
    """What vfplugin knows of one domain XML, validated: reading it again never raises."""

    name: str
    uuid: str | None  # canonical: lower case, dashed (generated MACs derive from it)
    requests: tuple[NicRequest, ...]
    hostdevs: tuple[HostdevRef, ...]  # interfaces first, then hostdevs, each in document order
    numa: NumaHint
    network_macs: tuple[tuple[str, str], ...] = ()  # (nic id, MAC) of owned <interface type='network'>


def read_domain(raw: bytes, source: str = "<stdin>") -> DomainFacts:
    """Screen, parse (expat) and validate a domain XML; RequestError if it is unusable."""
    reader = Reader(source)
    _expat(raw, reader, source)
    return reader.facts()


def read_uuid(raw: bytes, source: str = "<stdin>") -> str | None:
    """The domain's UUID exactly as ``read_domain`` names it (the first ``/domain/uuid``, canonical), reading
    no further than that element: None if the domain has none, RequestError if the XML is unusable up to it.

    For the hook's operations that only look the domain up in the ledger (started, stopped, release): the same
    name ``prepare`` claimed under, at a fraction of a full read, and from an XML broken after its <uuid>."""
    reader = Reader(source)
    _expat(raw, reader, source, until_uuid=True)
    text = "".join(reader._texts.get(UUID, ())).strip()
    try:
        return canonical_uuid(text) if text else None
    except ValueError as e:
        raise reader.fail(str(e)) from None


class _UuidRead(Exception):
    """Raised from expat's end-element handler to stop once /domain/uuid has been read."""


def _expat(raw: bytes, reader: Reader, source: str, until_uuid: bool = False) -> None:
    """Screen ``raw`` and feed its element events to ``reader`` (to the end, or to the end of /domain/uuid)."""
    from xml.parsers import expat

    declaration = screen(raw, source)
    encoding = declared_encoding(declaration) if declaration else None
    # "UTF8" is not a name expat knows: it would decode it through Python's codecs, byte by byte. UTF-8 it is.
    forced = "UTF-8" if encoding is None or encoding.lower() in UTF8_NAMES else None
    parser = expat.ParserCreate(encoding=forced, namespace_separator=" ")
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def refuse_dtd(*_: object) -> int:  # screen() found none in the prolog; defence in depth
        raise reader.fail("a DOCTYPE (with its entity declarations) is not allowed in a domain XML")

    def start(name: str, attrs: dict[str, str]) -> None:
        reader.start(_clark(name), {_clark(k): v for k, v in attrs.items()}, parser.CurrentLineNumber)

    parser.StartDoctypeDeclHandler = refuse_dtd
    parser.EntityDeclHandler = refuse_dtd
    parser.ExternalEntityRefHandler = refuse_dtd
    def end(_name: str) -> None:
        reader.end()
        if until_uuid and len(reader._path) == 1 and UUID in reader._texts:
            raise _UuidRead

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = reader.text
    try:
        parser.Parse(raw, True)
    except _UuidRead:
        pass
    except expat.ExpatError as e:
        problem = expat.ErrorString(e.code)
        raise reader.fail(f"malformed XML at line {e.lineno}, column {e.offset + 1}: {problem}") from None


def _clark(name: str) -> str:
    """expat's ``uri local`` (namespace_separator=" ") as lxml's ``{uri}local``."""
    uri, _, local = name.rpartition(" ")
    return f"{{{uri}}}{local}" if uri else local


def screen(raw: bytes, source: str) -> bytes | None:
    """Refuse what no parser may see (too big, not UTF-8, a DOCTYPE); the XML declaration, verbatim, or None."""
    declaration: bytes | None = None
    problem: str | None = None
    if len(raw) > MAX_BYTES:  # before anything else: a 50 MB input is refused by its size, not by a parse
        problem = f"input is {len(raw)} bytes, above the {MAX_BYTES}-byte limit for a domain XML"
    elif raw[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\0" in raw[:4]:
        problem = "not UTF-8 text (libvirt writes domain XML in UTF-8)"
    else:
        declaration, problem = _prolog(raw)
        encoding = declared_encoding(declaration) if declaration and not problem else None
        version = _pseudo_attribute(declaration, b"version") if declaration and not problem else None
        if version is not None and (version[:2] != "1." or not (version[2:] == "" or version[2:].isdigit())):
            # expat takes any version; libxml2 only 1.x ("1U0", "2.0" are refused): refused here for both
            problem = f"the XML declaration names version {version!r}; a domain XML is XML 1.0"
        elif encoding is not None and encoding.lower() not in ENCODINGS:
            problem = (
                f"the XML declaration names encoding {encoding!r}; vfplugin reads domain XML in UTF-8 (as libvirt "
                "writes it), ISO-8859-1 or US-ASCII: convert it (iconv -t UTF-8) and declare encoding='UTF-8'"
            )
    if problem:
        raise RequestError(source=source, problem=problem)
    return declaration


def declared_encoding(declaration: bytes) -> str | None:
    """The ``encoding`` pseudo-attribute of an XML declaration (``<?xml ... encoding='X'?>``), or None."""
    return _pseudo_attribute(declaration, b"encoding")


def _pseudo_attribute(declaration: bytes, name: bytes) -> str | None:
    at = declaration.find(name)
    if at < 0:
        return None
    rest = declaration[at + len(name) :].lstrip()
    if not rest.startswith(b"="):
        return None  # malformed: the parser says where
    rest = rest[1:].lstrip()
    quote = rest[:1]
    end = rest.find(quote, 1) if quote in (b"'", b'"') else -1
    return rest[1:end].decode("ascii", "replace") if end > 0 else None


def _prolog(raw: bytes) -> tuple[bytes | None, str | None]:
    """The XML declaration with the blank after it (verbatim, or None); a problem if there is a DOCTYPE.

    Scanned by hand before a parser sees the text: libxml2 would read an internal subset and its entity
    declarations (billion laughs) even with resolve_entities=False; a DOCTYPE can only stand in the prolog.
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
            return declaration, None  # unterminated: the parser reports it with its line number
        pos = end + close


class _Device:
    """One child of ``<devices>`` while it is read: what its first ``<alias>``, ``<mac>``... say."""

    def __init__(self, tag: str, attrs: Mapping[str, str], line: int | None) -> None:
        self.tag, self.attrs, self.line = tag, attrs, line
        self.alias: str | None = None
        self.mac: str | None = None
        self.address: Mapping[str, str] | None = None  # the first <source><address>
        self.pci_source = False  # some <source><address type='pci'>
        self.tag_id: str | None = None  # the first <vlan><tag id>

    @property
    def kind(self) -> str | None:
        """The kind of passed-through PCI device this is ("interface" or "hostdev"), else None."""
        if self.address is None:
            return None
        if self.tag == IFACE and self.attrs.get("type") == HOSTDEV and self.pci_source:
            return IFACE
        if self.tag == HOSTDEV and self.attrs.get("mode") == "subsystem" and self.attrs.get("type") == "pci":
            return HOSTDEV
        return None


class Reader:
    """Element events in document order (``start``, ``text``, ``end``) -> ``DomainFacts``.

    Only the paths below are looked at, each as libvirt writes it (a direct child of the one above):
    ``/domain/{name,uuid}``, ``/domain/metadata/vfp:nics/vfp:nic``, ``/domain/devices/*`` with its
    ``alias``, ``mac``, ``source/address`` and ``vlan/tag``, ``/domain/numatune/memory/@nodeset`` and
    ``/domain/vcpu/@cpuset``. Where a path occurs twice, the first one counts, as an XPath ``find`` would.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self._path: list[str] = []
        self._texts: dict[str, list[str]] = {}  # NAME/UUID -> the text of the first such element
        self._capturing: list[str] | None = None
        self._containers = 0  # <vfp:nics> elements
        self._nics: list[tuple[str, Mapping[str, str]]] = []  # (tag, attributes) of each child of <vfp:nics>
        self._devices: list[_Device] = []
        self._device: _Device | None = None
        self._nodeset: str | None = None
        self._cpuset: str | None = None

    def fail(self, problem: str) -> RequestError:
        return RequestError(source=self.source, problem=problem)

    def start(self, tag: str, attrs: Mapping[str, str], line: int | None) -> None:
        path = self._path
        path.append(tag)
        depth = len(path)
        if depth > MAX_DEPTH:
            raise self.fail(f"malformed XML at line {line}: elements nested deeper than {MAX_DEPTH} levels")
        if depth == 1:
            if tag != DOMAIN:
                raise self.fail(f"the root element is <{tag}>, expected <domain>")
        elif depth == 2:
            if tag in (NAME, UUID) and tag not in self._texts:
                self._capturing = self._texts[tag] = []
            elif tag == VCPU and self._cpuset is None:
                self._cpuset = attrs.get(CPUSET, "")
        elif depth == 3:
            parent = path[1]
            if parent == METADATA and tag == NICS:
                self._containers += 1
            elif parent == DEVICES:
                self._device = _Device(tag, attrs, line)
                self._devices.append(self._device)
            elif parent == NUMATUNE and tag == MEMORY and self._nodeset is None:
                self._nodeset = attrs.get(NODESET, "")
        elif depth == 4:
            if path[1] == METADATA and path[2] == NICS:
                if len(self._nics) == MAX_NICS:  # refused as it is read: validating 10,000 nics takes seconds
                    raise self.fail(f"the request has more than {MAX_NICS} nics, the limit for one domain")
                self._nics.append((tag, attrs))
            elif self._device is not None:
                device = self._device
                if tag == ALIAS and device.alias is None:
                    device.alias = attrs.get(ALIAS_NAME, "")
                elif tag == MAC and device.mac is None:
                    device.mac = attrs.get(MAC_ADDRESS, "")
        elif depth == 5 and self._device is not None and path[1] == DEVICES:
            device, parent = self._device, path[3]
            if parent == SOURCE and tag == ADDRESS:
                device.address = attrs if device.address is None else device.address
                device.pci_source = device.pci_source or attrs.get("type") == "pci"
            elif parent == VLAN and tag == TAG and device.tag_id is None:
                device.tag_id = attrs.get(TAG_ID)

    def text(self, data: str) -> None:
        if self._capturing is not None:
            self._capturing.append(data)

    def end(self) -> None:
        self._path.pop()
        depth = len(self._path)
        if depth == 1:
            self._capturing = None
        elif depth == 2:
            self._device = None

    # --- validation, once every event is in ----------------------------------------------------------------
    def facts(self) -> DomainFacts:
        name = "".join(self._texts.get(NAME, ())).strip()
        if not name:
            raise self.fail("the domain has no <name>")
        uuid_text = "".join(self._texts.get(UUID, ())).strip()
        try:
            uuid = canonical_uuid(uuid_text) if uuid_text else None
        except ValueError as e:
            raise self.fail(str(e)) from None
        aliases: set[str] = set()
        for device in self._devices:
            if device.alias is not None and device.alias.startswith(ALIAS_PREFIX):
                if device.alias in aliases:
                    raise self.fail(f"alias {device.alias!r} is on two devices; libvirt aliases are unique")
                aliases.add(device.alias)
        return DomainFacts(name, uuid, self._requests(), self._hostdevs(), self._numa(), self._network_macs())

    def _network_macs(self) -> tuple[tuple[str, str], ...]:
        """(nic id, MAC) of each ``<interface type='network'>`` vfplugin owns (a ``network=`` nic)."""
        out = []
        for device in self._devices:
            alias = device.alias or ""
            if device.tag == IFACE and device.attrs.get("type") == "network" and alias.startswith(ALIAS_PREFIX):
                try:
                    mac = parse_mac(device.mac) if device.mac else None
                except InvalidValue as e:
                    raise self.fail(f"<interface> at line {device.line}: {e}") from None
                if mac is not None:
                    out.append((alias[len(ALIAS_PREFIX):], mac))
        return tuple(out)

    def _requests(self) -> tuple[NicRequest, ...]:
        """Each ``<vfp:nic>`` validated; duplicate ids, VFs or MACs are refused."""
        if self._containers > 1:
            raise self.fail(f"<metadata> has {self._containers} <nics> elements of {REQUEST_NS}; keep one")
        nics: list[NicRequest] = []
        by_id: dict[str, NicRequest] = {}
        by_vf: dict[str, NicRequest] = {}
        by_mac: dict[str, NicRequest] = {}
        for index, (tag, attrs) in enumerate(self._nics, 1):
            if tag != NIC:
                raise self.fail(f"unexpected <{tag.rpartition('}')[2]}> in <nics>: only <nic> is known")
            label = repr(attrs.get(NIC_ID)) if attrs.get(NIC_ID) else f"#{index}"
            try:
                nic = parse_request(dict(attrs))
            except InvalidValue as e:
                text = str(e)  # request.py may name the nic already ("nic 'net0' 'pool,pf' is invalid")
                raise self.fail(text if text.startswith(f"nic {label} ") else f"nic {label}: {text}") from None
            if nic.id in by_id:
                raise self.fail(f"nic id {nic.id!r} is used twice; give each <nic> its own id")
            other = by_vf.get(nic.value) if nic.selector == "vf" else None
            if other is not None:
                raise self.fail(f"nics {other.id!r} and {nic.id!r} both ask for VF {nic.value}")
            other = by_mac.get(nic.mac) if nic.mac else None
            if other is not None:
                raise self.fail(f"nics {other.id!r} and {nic.id!r} both ask for MAC {nic.mac}")
            by_id[nic.id] = nic
            if nic.selector == "vf":
                by_vf[nic.value] = nic
            if nic.mac:
                by_mac[nic.mac] = nic
            nics.append(nic)
        return tuple(nics)

    def _hostdevs(self) -> tuple[HostdevRef, ...]:
        refs: list[HostdevRef] = []
        for kind in (IFACE, HOSTDEV):
            for device in self._devices:
                if device.kind != kind or device.address is None:
                    continue
                try:
                    address = PciAddress.from_libvirt(dict(device.address))
                    mac = parse_mac(device.mac) if device.mac else None
                    vlan = parse_vlan(device.tag_id) if device.tag_id is not None else None
                except InvalidValue as e:
                    raise self.fail(f"<{kind}> at line {device.line}: {e}") from None
                alias = device.alias or ""
                nic_id = alias[len(ALIAS_PREFIX) :] if alias.startswith(ALIAS_PREFIX) else None
                refs.append(HostdevRef(address, kind, nic_id, mac, vlan))
        seen: set[PciAddress] = set()
        for ref in refs:
            if ref.address in seen:
                raise self.fail(f"PCI device {ref.address} is passed through twice")
            seen.add(ref.address)
        return tuple(refs)

    def _numa(self) -> NumaHint:
        def bitmap(text: str | None, what: str) -> frozenset[int]:
            try:
                return parse_nodeset(text.strip(), what) if text and text.strip() else frozenset()
            except InvalidValue as e:
                raise self.fail(str(e)) from None

        return NumaHint(bitmap(self._nodeset, "numatune nodeset"), bitmap(self._cpuset, "vcpu cpuset"))


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
