"""What a domain asks for: one ``NicRequest`` per ``<vfp:nic>`` of the domain's ``urn:vfplugin:1`` metadata.

A request names exactly one selector (``pool``, ``model``, ``pf`` or ``vf``) and optional VF settings. This
module validates the attribute values (the same rules serve the XML and ``vfctl attach``) and says which
settings are vfplugin's to apply (libvirt applies MAC and VLAN of an ``<interface type='hostdev'>`` itself).
Pure: no I/O.
"""

from __future__ import annotations

from .addresses import PciAddress, parse_ifname, parse_int, parse_mac, parse_name, parse_nic_id, parse_vlan
from .errors import InvalidValue
from .record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING would import typing: the hook avoids it (bench_hook)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

SELECTORS = ("pool", "model", "pf", "vf", "network")  # network: a libvirt hostdev network picks the VF
LINK_STATES = {"auto": 0, "enable": 1, "disable": 2}  # IFLA_VF_LINK_STATE_* values
_OPTIONS = ("mac", "vlan", "qos", "trust", "spoofchk", "link_state", "min_tx_rate", "max_tx_rate")
# The options vfplugin itself applies through the PF (libvirt does MAC and VLAN of a hostdev interface): what a
# pool's ``settings`` may give and what the ledger keeps for a network nic.
VF_SETTINGS = ("trust", "spoofchk", "link_state", "min_tx_rate", "max_tx_rate")
ATTRIBUTES = ("id",) + SELECTORS + _OPTIONS
_ONOFF = {"on": True, "yes": True, "true": True, "off": False, "no": False, "false": False}


class NicRequest(Record):
    """One ``<vfp:nic>``: a selector (which VF) and the options (how to set it up), validated."""

    id: str  # the request's own word (<vfp:nic id=...>)
    selector: str  # one of SELECTORS
    value: str  # pool name, model name, PF netdev, VF PCI address (normalized) or libvirt network name
    # the options, in _OPTIONS' order (test_request checks it)
    mac: str | None = None
    vlan: int | None = None
    qos: int | None = None
    trust: bool | None = None
    spoofchk: bool | None = None
    link_state: str | None = None
    min_tx_rate: int | None = None
    max_tx_rate: int | None = None

    @property
    def alias(self) -> str:
        from . import ALIAS_PREFIX

        return ALIAS_PREFIX + self.id

    def describe(self) -> str:
        return f"{self.selector}={self.value}"

    def vf_settings(self) -> dict[str, object]:
        """The settings vfplugin applies through the PF (libvirt does MAC and VLAN for hostdev interfaces)."""
        settings: dict[str, object] = {}
        for key in VF_SETTINGS:
            value = getattr(self, key)
            if value is not None:
                settings[key] = value
        return settings

    def attributes(self) -> dict[str, str]:
        """Back to XML attribute text (for ``vfctl attach``, which writes the request into the metadata)."""
        out = {"id": self.id, self.selector: self.value}
        for key in _OPTIONS:
            value = getattr(self, key)
            if value is None:
                continue
            out[key] = ("on" if value else "off") if isinstance(value, bool) else str(value)
        return out


def with_defaults(nic: NicRequest, defaults: Sequence[tuple[str, object]]) -> NicRequest:
    """``nic`` with each VF setting it leaves unset taken from ``defaults`` (its pool's ``settings``)."""
    missing = {key: value for key, value in defaults if getattr(nic, key) is None}
    if not missing:
        return nic
    options = {key: getattr(nic, key) for key in _OPTIONS}
    options.update(missing)
    return NicRequest(nic.id, nic.selector, nic.value, **options)


def parse_request(attrs: Mapping[str, str]) -> NicRequest:
    """Validate one ``<vfp:nic>``'s attributes. Raises InvalidValue naming the attribute."""
    unknown = sorted(set(attrs) - set(ATTRIBUTES))
    if unknown:
        raise InvalidValue(
            what="nic attribute", value=unknown[0],
            problem=f"unknown; known attributes are {', '.join(ATTRIBUTES)}",
        )
    nic_id = parse_nic_id(attrs.get("id"))
    chosen = [s for s in SELECTORS if s in attrs]
    if len(chosen) != 1:
        raise InvalidValue(
            what=f"nic {nic_id!r} selector", value=",".join(chosen) or "(none)",
            problem="give exactly one selector of pool, model, pf, vf, network",
        )
    selector = chosen[0]
    raw = attrs[selector]
    if selector == "vf":
        value = str(PciAddress.parse(raw))
    elif selector == "pf":
        value = parse_ifname(raw, "PF name")
    elif selector == "pool":
        value = parse_name(raw, "pool name")
    elif selector == "network":
        value = parse_name(raw, "network name")
    else:
        value = raw.strip()
        # printable only: a control character cannot be written back into XML (vfctl attach --model)
        if not value or len(value) > 200 or not value.isprintable():
            raise InvalidValue(
                what="model", value=raw, problem="expected a model name as `vfctl list` shows it"
            )

    def onoff(key: str) -> bool | None:
        if key not in attrs:
            return None
        try:
            return _ONOFF[attrs[key].strip().lower()]
        except KeyError:
            raise InvalidValue(what=key, value=attrs[key], problem="expected on or off") from None

    def number(key: str, low: int, high: int) -> int | None:
        return parse_int(attrs[key], key, low, high) if key in attrs else None

    link_state = attrs.get("link_state")
    if link_state is not None and link_state not in LINK_STATES:
        raise InvalidValue(what="link_state", value=link_state, problem="expected auto, enable or disable")
    qos = number("qos", 0, 7)
    vlan = parse_vlan(attrs["vlan"]) if "vlan" in attrs else None
    if qos is not None and vlan is None:
        raise InvalidValue(what="qos", value=attrs["qos"], problem="a qos priority needs a vlan")
    min_rate = number("min_tx_rate", 0, 400_000)
    max_rate = number("max_tx_rate", 0, 400_000)
    if min_rate and max_rate and min_rate > max_rate:
        raise InvalidValue(what="min_tx_rate", value=attrs["min_tx_rate"], problem="above max_tx_rate")
    return NicRequest(
        id=nic_id,
        selector=selector,
        value=value,
        mac=parse_mac(attrs["mac"]) if "mac" in attrs else None,
        vlan=vlan,
        qos=qos,
        trust=onoff("trust"),
        spoofchk=onoff("spoofchk"),
        link_state=link_state,
        min_tx_rate=min_rate,
        max_tx_rate=max_rate,
    )


def metadata_fragment(nics: Sequence[NicRequest]) -> str:
    """The request as libvirt's setMetadata wants it: a *naked* ``<nics><nic .../></nics>``, no namespace.

    virDomainSetMetadata declares the prefix and URI it is given on the root and binds every element that has no
    namespace to it (virXMLInjectNamespace); a fragment that declares the prefix itself is refused ("failed to
    create a new XML namespace"). ``vfctl attach/detach`` use it.
    """
    from xml.sax.saxutils import quoteattr

    items = "".join(
        "<nic " + " ".join(f"{k}={quoteattr(v)}" for k, v in nic.attributes().items()) + "/>" for nic in nics
    )
    return f"<nics>{items}</nics>"
