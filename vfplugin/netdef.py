"""libvirt hostdev networks as vfplugin sees them: reading network and port XML, *guarded*, the pool.

Owns what vfplugin reads from libvirt network XML (``<network>``: its name, forward mode, ``<pf dev>`` and
``<address>`` entries, ``connections``), network port XML (``<networkport>``: UUID, owner, MAC, hostdev-pci
plug) and the network hook's ``<hookData>`` that carries both, and the rule that decides whether vfplugin
guards a network: a hostdev network (``<forward mode='hostdev'>``) whose ``<pf dev>`` is a managed PF
(``sriov_nics``) or whose ``<address>`` entries are VFs of managed PFs, whoever defined it.

Reading uses the standard library's expat (the network hook imports this on every event of a hostdev
network), screened like domain XML: a size limit, UTF-8, no DOCTYPE and so no entity declarations. Every
failure is one ``RequestError`` line. It must never call libvirt, open the ledger or change the host.
"""

from __future__ import annotations

from .addresses import PciAddress
from .errors import InvalidValue, RequestError
from .record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING would import typing: the hook avoids it (bench_hook)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from .config import Config
    Locate = Callable[[PciAddress], tuple[str, int] | None]

MAX_BYTES = 1024 * 1024  # a hostdev network lists at most a few thousand VFs: ~100 bytes each
MAX_DEPTH = 64


class NetworkFacts(Record):
    """One libvirt network, as far as vfplugin cares."""

    name: str
    uuid: str | None
    forward: str | None  # <forward mode>: "hostdev" for the networks vfplugin may guard
    pfs: tuple[str, ...]  # <forward><pf dev>
    addresses: tuple[PciAddress, ...]  # <forward><address type='pci'> entries (the pool, when listed)
    connections: int | None  # <network connections='N'> (live XML only)

    @property
    def hostdev(self) -> bool:
        return self.forward == "hostdev"


class PortFacts(Record):
    """One libvirt network port (``<networkport>``)."""

    uuid: str | None
    network: str | None  # <networkport><network name=...> (port XML; absent from hookData)
    owner_name: str | None
    owner_uuid: str | None
    mac: str | None
    plug: str | None  # <plug type>: "hostdev-pci" for a VF
    address: PciAddress | None  # <plug><address> of a hostdev-pci plug


def read(raw: bytes, source: str) -> tuple[NetworkFacts | None, PortFacts | None]:
    """Screen and parse ``<hookData>``, ``<network>`` or ``<networkport>``; RequestError if unusable."""
    from xml.parsers import expat

    _screen(raw, source)
    reader = _Reader(source)
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def refuse_dtd(*_: object) -> int:
        raise RequestError(source=source, problem="a DOCTYPE (with its entity declarations) is not allowed")

    parser.StartDoctypeDeclHandler = refuse_dtd
    parser.EntityDeclHandler = refuse_dtd
    parser.ExternalEntityRefHandler = refuse_dtd
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.text
    try:
        parser.Parse(raw, True)
    except expat.ExpatError as e:
        problem = expat.ErrorString(e.code)
        raise RequestError(
            source=source, problem=f"malformed XML at line {e.lineno}, column {e.offset + 1}: {problem}"
        ) from None
    return reader.facts()


def _screen(raw: bytes, source: str) -> None:
    problem = None
    if len(raw) > MAX_BYTES:
        problem = f"input is {len(raw)} bytes, above the {MAX_BYTES}-byte limit"
    elif raw[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\0" in raw[:4]:
        problem = "not UTF-8 text (libvirt writes its XML in UTF-8)"
    elif b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        problem = "a DOCTYPE (with its entity declarations) is not allowed"
    if problem:
        raise RequestError(source=source, problem=problem)


class _Reader:
    """Element events -> facts. Paths, each as libvirt writes them: ``[hookData/]network/{name,uuid}``,
    ``network/forward[@mode]/{pf[@dev],address}``, ``[hookData/]networkport/{uuid,network,owner/{name,uuid},
    mac,plug/address}``."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.path: list[str] = []
        self.texts: dict[str, list[str]] = {}
        self.capturing: list[str] | None = None
        self.net_attrs: Mapping[str, str] | None = None
        self.forward: str | None = None
        self.pfs: list[str] = []
        self.addresses: list[Mapping[str, str]] = []
        self.port = False
        self.port_attrs: dict[str, str] = {}
        self.plug_address: Mapping[str, str] | None = None

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        path = self.path
        if not path and tag == "hookData":
            path.append(tag)
            return
        path.append(tag)
        rel = path[1:] if path[0] == "hookData" else path
        depth = len(rel)
        if len(path) > MAX_DEPTH:
            raise RequestError(source=self.source, problem=f"elements nested deeper than {MAX_DEPTH} levels")
        if depth == 1:
            if tag == "network":
                self.net_attrs = attrs if self.net_attrs is None else self.net_attrs
            elif tag == "networkport":
                self.port = True
            else:
                raise RequestError(source=self.source, problem=f"unexpected root element <{tag}>")
        elif depth == 2:
            key = f"{rel[0]}/{tag}"
            if tag in ("name", "uuid") and key not in self.texts:
                self.capturing = self.texts[key] = []
            elif key == "network/forward" and self.forward is None:
                self.forward = attrs.get("mode", "")
            elif key == "networkport/mac":
                self.port_attrs.setdefault("mac", attrs.get("address", ""))
            elif key == "networkport/network":
                self.port_attrs.setdefault("network", attrs.get("name", ""))
            elif key == "networkport/plug":
                self.port_attrs.setdefault("plug", attrs.get("type", ""))
        elif depth == 3:
            key = f"{rel[0]}/{rel[1]}/{tag}"
            if key == "network/forward/pf" and attrs.get("dev"):
                self.pfs.append(attrs["dev"])
            elif key == "network/forward/address" and attrs.get("type", "pci") == "pci":
                self.addresses.append(attrs)
            elif key in ("networkport/owner/name", "networkport/owner/uuid") and key not in self.texts:
                self.capturing = self.texts[key] = []
            elif key == "networkport/plug/address" and self.plug_address is None:
                self.plug_address = attrs

    def text(self, data: str) -> None:
        if self.capturing is not None:
            self.capturing.append(data)

    def end(self, _tag: str) -> None:
        self.path.pop()
        self.capturing = None

    def _text(self, key: str) -> str | None:
        parts = self.texts.get(key)
        return "".join(parts).strip() if parts is not None else None

    def _address(self, attrs: Mapping[str, str], what: str) -> PciAddress:
        try:
            address = PciAddress.from_libvirt(dict(attrs))
            return PciAddress.parse(str(address))  # the value type's range checks
        except InvalidValue as e:
            raise RequestError(source=self.source, problem=f"{what}: {e}") from None

    def facts(self) -> tuple[NetworkFacts | None, PortFacts | None]:
        network = None
        if self.net_attrs is not None:
            name = self._text("network/name")
            if not name:
                raise RequestError(source=self.source, problem="the network has no <name>")
            connections = self.net_attrs.get("connections")
            if connections is not None and not connections.isdigit():
                raise RequestError(source=self.source, problem=f"connections={connections!r} is not a number")
            network = NetworkFacts(
                name, (self._text("network/uuid") or "").lower() or None, self.forward, tuple(self.pfs),
                tuple(self._address(a, "<forward><address>") for a in self.addresses),
                int(connections) if connections is not None else None,
            )
        port = None
        if self.port:
            a = self.plug_address
            mac = self.port_attrs.get("mac") or None
            port = PortFacts(
                (self._text("networkport/uuid") or "").lower() or None,
                self.port_attrs.get("network") or None,
                self._text("networkport/owner/name") or None,
                (self._text("networkport/owner/uuid") or "").lower() or None,
                mac.lower() if mac else None,
                self.port_attrs.get("plug") or None,
                self._address(a, "<plug><address>") if a is not None else None,
            )
        return network, port


# --- guarded networks and their pools ------------------------------------------------------------------------


def guarded(network: NetworkFacts, config: Config, locate: Locate) -> bool:
    """Whether vfplugin guards ``network``: a hostdev network over a managed PF or VFs of managed PFs."""
    if not network.hostdev:
        return False
    managed = set(config.managed_pfs)
    if any(pf in managed for pf in network.pfs):
        return True
    for address in network.addresses:
        where = locate(address)
        if where is not None and where[0] in managed:
            return True
    return False


def in_pool(network: NetworkFacts, address: PciAddress, locate: Locate) -> tuple[str, int] | None:
    """(PF, VF index) when VF ``address`` is in the network's pool, else None.

    The pool is the ``<address>`` list when there is one (libvirt fills it from the PF on a live network),
    else the VFs of the ``<pf dev>``."""
    where = locate(address)
    if where is None:
        return None
    if network.addresses:
        return where if address in network.addresses else None
    return where if where[0] in network.pfs else None
