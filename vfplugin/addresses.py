"""Value types for the names vfplugin handles: PCI addresses, MAC addresses, VLAN ids, netdev and domain names.

Each is parsed and validated once, at the edge where it enters (XML, YAML, argv, sysfs), and carried as a
value afterwards. Pure: no I/O, standard library only (the hook imports this on its fast path).
"""

from __future__ import annotations

from .errors import InvalidValue
from .record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING would import typing: the hook avoids it (bench_hook)
if TYPE_CHECKING:
    from typing import TypeGuard

# Character sets, not regular expressions: the hook validates every address it reads on each start and stop,
# and importing re would cost it 3 ms (bench/bench_hook.py). (A regex "$" also lets a trailing newline pass.)
_DIGITS = frozenset("0123456789")
_HEX = _DIGITS | frozenset("abcdefABCDEF")
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_IFNAME_CHARS = _ALNUM | frozenset("_.:@-")  # IFNAMSIZ is 16 with the NUL; no '/' or blanks
_NAME_CHARS = _ALNUM | frozenset("_.+:-")
# libvirt accepts user aliases ("ua-...") made of these characters only (USER_ALIAS_CHARS, domain_conf.c).
_NIC_ID_CHARS = _ALNUM | frozenset("_-")


def _made_of(text: object, chars: frozenset[str], longest: int) -> TypeGuard[str]:
    return isinstance(text, str) and 1 <= len(text) <= longest and chars.issuperset(text)


def _hex(text: str, digits: int) -> bool:
    return len(text) == digits and _HEX.issuperset(text)


class PciAddress(Record):
    """A PCI function address, ``0000:0a:00.2``; ordered as the kernel lists them."""

    domain: int
    bus: int
    slot: int
    function: int

    def __lt__(self, other: PciAddress) -> bool:
        return self._values() < other._values()

    @classmethod
    def parse(cls, text: str) -> PciAddress:
        """``DDDD:BB:SS.F`` (or ``BB:SS.F``), hex, as sysfs and lspci write it."""
        head, dot, function = text.strip().rpartition(".") if isinstance(text, str) else ("", "", "")
        parts = head.split(":")
        if len(parts) == 2:
            parts.insert(0, "0000")
        if not (
            dot and len(parts) == 3 and _hex(parts[0], 4) and _hex(parts[1], 2) and _hex(parts[2], 2)
            and len(function) == 1 and function in "01234567"
        ):
            raise InvalidValue(what="PCI address", value=text, problem="expected DDDD:BB:SS.F, e.g. 0000:0a:00.2")
        address = cls(int(parts[0], 16), int(parts[1], 16), int(parts[2], 16), int(function))
        if address.slot > 0x1F:
            raise InvalidValue(what="PCI address", value=text, problem="slot above 0x1f")
        return address

    @classmethod
    def from_libvirt(cls, attrs: dict[str, str]) -> PciAddress:
        """From the attributes of libvirt's ``<address type='pci' domain='0x0000' bus='0x0a' .../>``."""
        try:
            address = cls(*(int(attrs.get(k, "0"), 0) for k in ("domain", "bus", "slot", "function")))
        except ValueError:
            raise InvalidValue(what="PCI address", value=str(dict(attrs)), problem="not a number") from None
        # libvirt's own limits (virPCIDeviceAddressIsValid); beyond them str() would not parse back
        if not (0 <= address.domain <= 0xFFFF and 0 <= address.bus <= 0xFF and 0 <= address.slot <= 0x1F
                and 0 <= address.function <= 7):
            raise InvalidValue(what="PCI address", value=str(dict(attrs)),
                               problem="out of range (domain 0-0xffff, bus 0-0xff, slot 0-0x1f, function 0-7)")
        return address

    def libvirt_attrs(self) -> dict[str, str]:
        return {
            "type": "pci",
            "domain": f"0x{self.domain:04x}",
            "bus": f"0x{self.bus:02x}",
            "slot": f"0x{self.slot:02x}",
            "function": f"0x{self.function:x}",
        }

    def __str__(self) -> str:
        return f"{self.domain:04x}:{self.bus:02x}:{self.slot:02x}.{self.function:x}"


def parse_mac(text: str, what: str = "MAC address") -> str:
    """A unicast MAC address, returned lower-case with colons."""
    octets = text.split(":") if isinstance(text, str) else []
    if len(octets) != 6 or not all(_hex(octet, 2) for octet in octets):
        raise InvalidValue(what=what, value=text, problem="expected six hex octets, e.g. 52:54:00:12:34:56")
    mac = text.lower()
    if int(mac[:2], 16) & 1:
        raise InvalidValue(what=what, value=text, problem="a multicast address cannot be a NIC's MAC")
    if mac == "00:00:00:00:00:00":
        raise InvalidValue(what=what, value=text, problem="the all-zero address is not a NIC's MAC")
    return mac


def canonical_uuid(text: str) -> str:
    """A UUID as libvirt formats it (lower case, dashed 8-4-4-4-12), from any spelling libvirt accepts (its
    dashes anywhere or nowhere, either case; virUUIDParse): the one name of a domain in the ledger, in OVS's
    external_ids and in its generated MACs. ValueError when ``text`` is not 32 hex digits."""
    digits = text.replace("-", "").lower()
    if len(digits) != 32 or not _hex(digits, 32):
        raise ValueError(f"<uuid> {text!r} is not a UUID")
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def parse_mac_prefix(text: str) -> str:
    """A 1-5 octet prefix for generated MACs (``52:54:00``), unicast."""
    parts = text.split(":") if isinstance(text, str) else []
    if not 1 <= len(parts) <= 5 or not all(_hex(p, 2) for p in parts):
        raise InvalidValue(what="MAC prefix", value=text, problem="expected 1 to 5 hex octets, e.g. 52:54:00")
    if int(parts[0], 16) & 1:
        raise InvalidValue(what="MAC prefix", value=text, problem="the first octet must be unicast (even)")
    return ":".join(parts).lower()


def parse_int(text: object, what: str, low: int, high: int) -> int:
    """An integer in [low, high], from XML/argv text or a YAML int."""
    try:
        if isinstance(text, bool):
            raise ValueError
        if isinstance(text, int):
            value = text
        else:
            # ASCII digits only: int() would also take "1_0" and other scripts' digits ("٣"), which no one means
            digits = str(text).strip()
            unsigned = digits[1:] if digits.startswith(("+", "-")) else digits
            if not unsigned or not _DIGITS.issuperset(unsigned):
                raise ValueError
            value = int(digits, 10)
    except ValueError:
        raise InvalidValue(what=what, value=text, problem=f"expected an integer {low}-{high}") from None
    if not low <= value <= high:
        raise InvalidValue(what=what, value=text, problem=f"must be {low}-{high}")
    return value


def parse_vlan(text: object) -> int:
    return parse_int(text, "VLAN", 1, 4094)


def parse_ifname(text: object, what: str = "interface name") -> str:
    if not _made_of(text, _IFNAME_CHARS, 15) or text in (".", ".."):
        raise InvalidValue(what=what, value=text, problem="expected a Linux netdev name (1-15 of A-Z a-z 0-9 _ . -)")
    return text


def parse_name(text: object, what: str = "name") -> str:
    """An identifier vfplugin puts into XML aliases, OVS external_ids and log lines (nic ids, pool names)."""
    if not _made_of(text, _NAME_CHARS, 64):
        raise InvalidValue(what=what, value=text, problem="use 1-64 of A-Z a-z 0-9 _ . + : -")
    return text


def parse_nic_id(text: object) -> str:
    """A request's nic id; it becomes the libvirt alias ``ua-vfplugin-<id>``, so libvirt's alias rules apply."""
    if not _made_of(text, _NIC_ID_CHARS, 32):
        raise InvalidValue(what="nic id", value=text, problem="use 1-32 of A-Z a-z 0-9 _ - (a libvirt alias)")
    return text
