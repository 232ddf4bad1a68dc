"""The thin edge to libvirt (libvirt-python), for ``vfctl`` only: the hook must never call libvirt.

Every libvirt failure becomes one ``LibvirtError`` line naming the domain and what libvirt said.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import REQUEST_NS
from .errors import LibvirtError

AFFECT_CURRENT, AFFECT_LIVE, AFFECT_CONFIG = 0, 1, 2  # VIR_DOMAIN_AFFECT_*
XML_INACTIVE = 2  # VIR_DOMAIN_XML_INACTIVE
METADATA_ELEMENT = 2  # VIR_DOMAIN_METADATA_ELEMENT


def _libvirt() -> Any:
    import libvirt

    # libvirt-python prints every error to stderr by default; vfctl reports them itself, once.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


def _message(e: Exception) -> str:
    get = getattr(e, "get_error_message", None)
    return " ".join(str(get() if get else e).split())


@contextmanager
def connect(uri: str) -> Iterator[Any]:
    libvirt = _libvirt()
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as e:
        raise LibvirtError(
            problem=f"cannot connect to {uri}: {_message(e)}; is libvirtd (or virtqemud) running?"
        ) from None
    try:
        yield conn
    finally:
        conn.close()


def call(what: str, fn: Any, *args: Any) -> Any:
    """Run one libvirt call; a libvirtError becomes a one-line LibvirtError saying what was being done."""
    libvirt = _libvirt()
    try:
        return fn(*args)
    except libvirt.libvirtError as e:
        raise LibvirtError(problem=f"{what}: {_message(e)}") from None


def lookup(conn: Any, name: str) -> Any:
    return call(f"domain {name!r}", conn.lookupByName, name)


def xml(dom: Any, inactive: bool = False) -> bytes:
    text = call(f"dumpxml {dom.name()}", dom.XMLDesc, XML_INACTIVE if inactive else 0)
    return str(text).encode("utf-8")


def running_domains(conn: Any) -> list[Any]:
    return list(call("list running domains", conn.listAllDomains, 1))  # VIR_CONNECT_LIST_DOMAINS_ACTIVE


def set_request_metadata(dom: Any, nics_xml: str | None, flags: int) -> None:
    """Replace the domain's vfplugin metadata element (``<vfp:nics>``) the libvirt way; None removes it."""
    call(
        f"set metadata of {dom.name()}", dom.setMetadata, METADATA_ELEMENT, nics_xml, "vfp", REQUEST_NS, flags
    )
