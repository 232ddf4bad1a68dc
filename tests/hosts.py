"""The fixture hosts for tests: where each tree is, and a configuration pointing at it.

``write_config(tmp_path, host="example", **overrides)`` writes ``tmp_path/vfplugin-<host>.yaml`` from
tests/fixtures/hosts/<host>.yaml with ``sysfs_root`` set to the absolute fixture tree and ``ledger`` to
``tmp_path/ledger.sqlite3``; each keyword replaces a top-level key (None removes it). Returns the path.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import FIXTURES

HOSTS_DIR = FIXTURES / "hosts"
HOSTS = ("example", "intel", "noiommu")


def host_root(host: str = "example") -> Path:
    """The checked-in tree of ``host`` (a directory containing sys/ and proc/). Read-only: copy to write."""
    root = HOSTS_DIR / host
    if not (root / "sys").is_dir():
        raise ValueError(f"no fixture host {host!r}; hosts: {', '.join(HOSTS)}")
    return root


def host_settings(host: str = "example") -> dict[str, Any]:
    """The host's configuration template as a mapping (without sysfs_root/ledger)."""
    data = yaml.safe_load((HOSTS_DIR / f"{host}.yaml").read_text()) or {}
    assert isinstance(data, dict)
    return data


def write_config(tmp_path: Path, host: str = "example", **overrides: Any) -> Path:
    data = host_settings(host)
    data["sysfs_root"] = str(host_root(host))
    data["ledger"] = str(tmp_path / "ledger.sqlite3")
    for key, value in overrides.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = str(value) if isinstance(value, Path) else value
    path = tmp_path / f"vfplugin-{host}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def copy_host(tmp_path: Path, host: str = "example") -> Path:
    """A writable copy of a fixture tree (symlinks kept as symlinks), for tests that write sysfs."""
    target = tmp_path / f"host-{host}"
    shutil.copytree(host_root(host), target, symlinks=True)
    return target
