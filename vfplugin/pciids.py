"""Vendor and device names from the pci.ids database, and the model name vfplugin lists and allocates by.

The file (about 1.3 MB) is read once per ``PciIds`` object, on the first lookup, and never parsed as a whole:
a lookup finds the vendor's line with a byte search and walks only that vendor's device lines. Results are
cached per (vendor, device). This module must never fail a caller: a missing or unreadable file means every
device is unknown and shows as ``vvvv:dddd``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

# Debian ships pci.ids in /usr/share/misc (package pci.ids); Fedora/RHEL in /usr/share/hwdata (hwdata).
DEFAULT_PATHS = (Path("/usr/share/misc/pci.ids"), Path("/usr/share/hwdata/pci.ids"))

_BRACKETS = re.compile(r"\[([^\[\]]+)\]")
_BLOCK_END = re.compile(rb"\n[^\t#\n]")  # no lookahead: re scans that far slower


def model_name(device_name: str | None, vendor_id: str, device_id: str) -> str:
    """The model rule of DESIGN.md section 7: the text in square brackets, else the whole device name.

    ``MT27800 Family [ConnectX-5 Virtual Function]`` -> ``ConnectX-5 Virtual Function``; an unknown device
    -> ``15b3:1018``. pci.ids puts the marketing name in brackets after the chip family; when a name has
    several bracketed parts, the last one is that marketing name.
    """
    if not device_name:
        return f"{vendor_id}:{device_id}"
    found = _BRACKETS.findall(device_name)
    return found[-1].strip() if found else device_name.strip()


class PciIds:
    """Lazy, cached lookups in one pci.ids file (``path``; default: the first DEFAULT_PATHS that exists)."""

    def __init__(self, path: Path | None = None, candidates: Sequence[Path] = DEFAULT_PATHS) -> None:
        self._path = path
        self._candidates = tuple(candidates)
        self._data: bytes | None = None
        self._devices: dict[tuple[str, str], str | None] = {}
        self._vendors: dict[str, str | None] = {}

    @property
    def path(self) -> Path | None:
        if self._path is None:
            self._path = next((p for p in self._candidates if p.is_file()), None)
        return self._path

    def _text(self) -> bytes:
        if self._data is None:
            try:
                # The leading newline lets every vendor line, the first one too, be found as "\nvvvv  ".
                self._data = b"\n" + self.path.read_bytes() if self.path else b""
            except OSError:
                self._data = b""
        return self._data

    def _vendor_span(self, vendor_id: str) -> tuple[int, int] | None:
        """Byte offsets of the vendor's own line start and the end of its device block."""
        data = self._text()
        key = b"\n" + vendor_id.lower().encode("ascii") + b"  "
        start = data.find(key)
        if start < 0:
            return None
        start += 1
        # The block ends at the next line that starts with neither a tab nor '#' (the next vendor or class).
        end = _BLOCK_END.search(data, start)
        return start, end.start() + 1 if end else len(data)

    def vendor(self, vendor_id: str) -> str | None:
        """The vendor's name, or None when pci.ids does not know it."""
        vendor_id = vendor_id.lower()
        if vendor_id not in self._vendors:
            span = self._vendor_span(vendor_id) if _is_id(vendor_id) else None
            name = None
            if span:
                line = self._text()[span[0] : self._text().find(b"\n", span[0])]
                name = line[6:].decode("utf-8", "replace").strip() or None
            self._vendors[vendor_id] = name
        return self._vendors[vendor_id]

    def device(self, vendor_id: str, device_id: str) -> str | None:
        """The device's full name (``MT27800 Family [ConnectX-5 Virtual Function]``), or None if unknown."""
        key = (vendor_id.lower(), device_id.lower())
        if key not in self._devices:
            self._devices[key] = self._find_device(*key) if _is_id(key[0]) and _is_id(key[1]) else None
        return self._devices[key]

    def _find_device(self, vendor_id: str, device_id: str) -> str | None:
        span = self._vendor_span(vendor_id)
        if not span:
            return None
        data = self._text()
        needle = b"\n\t" + device_id.encode("ascii") + b"  "
        at = data.find(needle, span[0], span[1])
        if at < 0:
            return None
        start = at + len(needle)
        end = data.find(b"\n", start)
        return data[start : end if end >= 0 else len(data)].decode("utf-8", "replace").strip() or None

    def model(self, vendor_id: str, device_id: str) -> str:
        """The model name ``vfctl list`` shows and requests select by (see ``model_name``)."""
        return model_name(self.device(vendor_id, device_id), vendor_id.lower(), device_id.lower())


def _is_id(text: str) -> bool:
    return len(text) == 4 and all(c in "0123456789abcdef" for c in text)
