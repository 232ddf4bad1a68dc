"""The host configuration: YAML in, a frozen ``Config`` out, every problem named by its key.

``parse`` is pure (a mapping in, a Config or a ConfigError out); ``load`` is the only function that touches
the file system. A missing file is not an error: it gives the defaults and ``Config.source`` is None, which
``vfctl doctor`` reports. Whether the PFs named here exist is the business of sysfs.py, not of this module.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping

from . import DEFAULT_CONFIG
from .addresses import parse_ifname, parse_int, parse_mac_prefix, parse_name
from .errors import ConfigError, InvalidValue
from .record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING would import typing: the hook avoids it (bench_hook)
if TYPE_CHECKING:
    from typing import Any

    from _typeshed import StrPath

DEFAULT_LEDGER = "/var/lib/vfplugin/ledger.sqlite3"
ENV_VAR = "VFPLUGIN_CONFIG"
CACHE_DIR = "/run/vfplugin"  # tmpfs: gone at reboot, 0700 root
CACHE_FILE = "config-cache.marshal"
CACHE_ENV_VAR = "VFPLUGIN_CONFIG_CACHE"  # a private cache directory for a configuration other than the default


class Network(Record):
    """One ``ifname/bridge/ip-or-wire`` entry, as on the reference platform."""

    ifname: str
    bridge: str
    address: str


class Pool(Record):
    """A named set of VFs: those of ``pfs`` (all managed PFs when empty) whose model is ``model`` (any if None);
    ``settings`` are the VF settings (trust, spoofchk, link_state, min/max_tx_rate) a VF taken from the pool gets
    where its request says nothing of them."""

    name: str
    pfs: tuple[str, ...] = ()
    model: str | None = None
    settings: tuple[tuple[str, object], ...] = ()

    def admits(self, pf: str, model: str) -> bool:
        return (not self.pfs or pf in self.pfs) and (self.model is None or self.model == model)


class Config(Record):
    """The whole configuration, validated; ``Config()`` is the defaults."""

    sriov_nics: tuple[str, ...] = ()
    ovs_offload_nics: tuple[str, ...] = ()
    networks: tuple[Network, ...] = ()
    pools: tuple[Pool, ...] = ()
    ledger: str = DEFAULT_LEDGER  # paths are strings: pathlib costs the hook more than its work
    mac_prefix: str = "52:54:00"
    reservation_ttl: int = 300
    sysfs_root: str = "/"
    vfs: tuple[tuple[str, int], ...] = ()  # host state: (PF, VF count) to create at boot (vfctl host apply)
    eswitch: tuple[tuple[str, str], ...] = ()  # host state: (PF, "legacy" | "switchdev")
    source: str | None = None  # None: no file, defaults in force

    def _values(self) -> tuple[object, ...]:
        return super()._values()[:-1]  # where it was read from is no part of what it says

    @property
    def managed_pfs(self) -> tuple[str, ...]:
        """Every PF whose VFs vfplugin hands out, in configuration order."""
        return tuple(dict.fromkeys(self.sriov_nics + self.ovs_offload_nics))

    def pool(self, name: str) -> Pool | None:
        return next((p for p in self.pools if p.name == name), None)

    def bridge_for(self, pf: str) -> str | None:
        """The OVS bridge for a PF's representors: the bridge ``networks`` names for that PF."""
        return next((n.bridge for n in self.networks if n.ifname == pf), None)

    def pools_of(self, pf: str, model: str) -> tuple[str, ...]:
        return tuple(p.name for p in self.pools if p.admits(pf, model))

    @property
    def host_pfs(self) -> tuple[str, ...]:
        """The PFs whose host state (``vfs``, ``eswitch``) the configuration sets, in configuration order."""
        return tuple(dict.fromkeys([pf for pf, _ in self.vfs] + [pf for pf, _ in self.eswitch]))


_KEYS = {
    "sriov_nics", "ovs_offload_nics", "networks", "pools", "ledger", "mac_prefix", "reservation_ttl", "sysfs_root",
    "vfs", "eswitch",
}
ESWITCH_MODES = ("legacy", "switchdev")


def _pool_settings(
    raw: Any, key: str, fail: Callable[[str, str], ConfigError]
) -> tuple[tuple[str, object], ...]:
    """A pool's ``settings``, validated by the request's own rules: the same words and limits as ``<vfp:nic>``."""
    if raw is None:
        return ()
    from .request import VF_SETTINGS, parse_request  # here: a configuration without pool settings never needs it

    if not isinstance(raw, Mapping):
        raise fail(key, f"expected a mapping of {', '.join(VF_SETTINGS)}")
    extra = sorted(str(k) for k in raw if k not in VF_SETTINGS)
    if extra:
        raise fail(f"{key}.{extra[0]}", f"unknown setting; a pool may set {', '.join(VF_SETTINGS)}")
    attrs = {"id": "settings", "pool": "settings"}
    for name, value in raw.items():  # YAML reads on/off as booleans
        attrs[name] = ("on" if value else "off") if isinstance(value, bool) else str(value)
    try:
        settings = parse_request(attrs).vf_settings()
    except InvalidValue as e:
        raise fail(key, str(e)) from None
    return tuple((name, settings[name]) for name in VF_SETTINGS if name in settings)


def parse(data: Any, source: str = "<config>") -> Config:
    """Validate a loaded YAML document. Raises ConfigError naming the key and the fix."""

    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(path=source, key=key, problem=problem)

    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise fail("(top level)", f"expected a mapping of keys, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in _KEYS)
    if unknown:
        raise fail(unknown[0], f"unknown key; known keys are {', '.join(sorted(_KEYS))}")

    def nic_list(key: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if value is None:
            return ()
        if not isinstance(value, list):
            raise fail(key, f"expected a list of netdev names like [eth2], got {value!r}")
        try:
            names = tuple(parse_ifname(v, "PF name") for v in value)
        except InvalidValue as e:
            raise fail(key, str(e)) from None
        if len(set(names)) != len(names):
            raise fail(key, "a PF is listed twice")
        return names

    sriov_nics = nic_list("sriov_nics")
    ovs_offload_nics = nic_list("ovs_offload_nics")
    managed = set(sriov_nics) | set(ovs_offload_nics)

    networks = []
    raw_networks = data.get("networks") or []
    if not isinstance(raw_networks, list):
        raise fail("networks", "expected a list of 'ifname/bridge/ip-or-wire' strings")
    for entry in raw_networks:
        parts = entry.split("/", 2) if isinstance(entry, str) else []
        if len(parts) != 3 or not all(parts):
            raise fail("networks", f"{entry!r} is not 'ifname/bridge/ip-or-wire' (e.g. eth3/br1/bcast0)")
        try:
            networks.append(Network(parse_ifname(parts[0]), parse_ifname(parts[1], "bridge name"), parts[2]))
        except InvalidValue as e:
            raise fail("networks", str(e)) from None

    pools = []
    raw_pools = data.get("pools") or {}
    if not isinstance(raw_pools, Mapping):
        raise fail("pools", "expected a mapping of pool name -> {pfs: [...], model: ...}")
    for name, spec in raw_pools.items():
        key = f"pools.{name}"
        try:
            parse_name(name, "pool name")
        except InvalidValue as e:
            raise fail(key, str(e)) from None
        if not isinstance(spec, Mapping):
            raise fail(key, "expected {pfs: [eth2], model: \"...\"}")
        extra = sorted(str(k) for k in spec if k not in ("pfs", "model", "settings"))  # YAML keys may be numbers
        if extra:
            raise fail(f"{key}.{extra[0]}", "unknown key; a pool has pfs, model and settings")
        pfs = spec.get("pfs") or []
        if not isinstance(pfs, list) or not all(isinstance(p, str) for p in pfs):
            raise fail(f"{key}.pfs", "expected a list of PF names")
        for pf in pfs:
            if pf not in managed:
                raise fail(f"{key}.pfs", f"PF {pf!r} is not in sriov_nics or ovs_offload_nics; add it there first")
        model = spec.get("model")
        if model is not None and (not isinstance(model, str) or not model.strip()):
            raise fail(f"{key}.model", "expected a model name as `vfctl list` shows it")
        pools.append(Pool(str(name), tuple(pfs), model, _pool_settings(spec.get("settings"), f"{key}.settings", fail)))

    def path(key: str, default: str) -> str:
        value = data.get(key, default)
        if not isinstance(value, str) or not value.startswith("/"):
            raise fail(key, f"expected an absolute path, got {value!r}")
        return value

    try:
        mac_prefix = parse_mac_prefix(data.get("mac_prefix", "52:54:00"))
    except InvalidValue as e:
        raise fail("mac_prefix", str(e)) from None
    try:
        ttl = parse_int(data.get("reservation_ttl", 300), "reservation_ttl", 1, 7 * 24 * 3600)
    except InvalidValue as e:
        raise fail("reservation_ttl", str(e)) from None

    def host_state(key: str, check: Callable[[str, Any], Any]) -> tuple[tuple[str, Any], ...]:
        """``vfs``/``eswitch``: a mapping of managed PF -> value, each checked by ``check``."""
        raw = data.get(key) or {}
        if not isinstance(raw, Mapping):
            raise fail(key, "expected a mapping of PF -> value, e.g. {eth2: 7}" if key == "vfs"
                       else "expected a mapping of PF -> mode, e.g. {eth3: switchdev}")
        out = []
        for pf, value in raw.items():
            if pf not in managed:
                raise fail(f"{key}.{pf}", f"PF {pf!r} is not in sriov_nics or ovs_offload_nics; add it there first")
            out.append((str(pf), check(f"{key}.{pf}", value)))
        return tuple(out)

    def vf_count(key: str, value: Any) -> int:
        try:
            return parse_int(value, "VF count", 0, 65535)
        except InvalidValue as e:
            raise fail(key, str(e)) from None

    def eswitch_mode(key: str, value: Any) -> str:
        if value not in ESWITCH_MODES:
            raise fail(key, f"expected legacy or switchdev, got {value!r}")
        if value == "switchdev" and key.split(".", 1)[1] not in ovs_offload_nics:
            raise fail(key, "a switchdev PF's representors go into OVS: list it in ovs_offload_nics too")
        return str(value)

    return Config(
        sriov_nics=sriov_nics,
        ovs_offload_nics=ovs_offload_nics,
        networks=tuple(networks),
        pools=tuple(pools),
        ledger=path("ledger", DEFAULT_LEDGER),
        mac_prefix=mac_prefix,
        reservation_ttl=ttl,
        sysfs_root=path("sysfs_root", "/"),
        vfs=host_state("vfs", vf_count),
        eswitch=host_state("eswitch", eswitch_mode),
        source=source if source != "<config>" else None,
    )


def config_path(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """``--config`` wins, then ``$VFPLUGIN_CONFIG``, then /etc/vfplugin/vfplugin.yaml."""
    env = os.environ if environ is None else environ
    return explicit or env.get(ENV_VAR) or DEFAULT_CONFIG


def load(
    explicit: str | None = None, environ: Mapping[str, str] | None = None,
    cache_dir: StrPath | None = CACHE_DIR,
) -> Config:
    """Read and validate the configuration file; a missing file gives the defaults (``source`` None).

    The YAML document, once it has validated, is cached in ``cache_dir`` keyed by the file's identity (device,
    inode, size, mtime): the hook runs on every lifecycle event and PyYAML costs more to import than the rest
    of a hook run. The cache is in ``marshal`` form, built into the interpreter: even json would cost the hook
    3 ms (it imports re). A cached document is validated again (``parse`` is cheap); any doubt reads the YAML.
    The system cache (CACHE_DIR, shared by the hook and every root ``vfctl``) holds only the default path's
    configuration: a ``--config X`` there would evict the hook's entry.
    """
    path = config_path(explicit, environ)
    if cache_dir == CACHE_DIR and path != DEFAULT_CONFIG:
        # Another file (tests, benchmarks) is cached only where $VFPLUGIN_CONFIG_CACHE says; the hook's scrubbed
        # environment never names one.
        cache_dir = (os.environ if environ is None else environ).get(CACHE_ENV_VAR) or None
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            raw = f.read()
    except FileNotFoundError:
        if explicit:  # a file named on the command line must exist
            raise ConfigError(path=path, key="(file)", problem="no such file") from None
        return Config()
    except OSError as e:
        raise ConfigError(path=path, key="(file)", problem=f"cannot read: {e.strerror}") from None
    key = (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    cached = _cache_read(cache_dir, key)
    if cached is not None:
        return parse(cached, path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(path=path, key="(file)", problem="not UTF-8 text") from None

    import yaml  # deferred: only on a cache miss

    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader, chosen above
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise ConfigError(path=path, key=where, problem=f"not valid YAML: {getattr(e, 'problem', e)}") from None
    config = parse(data, path)
    _cache_write(cache_dir, key, data)
    return config


def _cache_read(cache_dir: StrPath | None, key: tuple[object, ...]) -> Any:
    """The cached document for ``key``, or None. Only a file this user owns and nobody else may write is read:
    marshal trusts its input, and the cache holds nothing that the YAML file does not."""
    if cache_dir is None:
        return None
    import marshal

    try:
        with open(os.path.join(cache_dir, CACHE_FILE), "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                return None
            cached = marshal.load(f)
        return cached["data"] if cached.get("key") == key and cached.get("python") == sys.hexversion else None
    except (OSError, EOFError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _cache_write(cache_dir: StrPath | None, key: tuple[object, ...], data: Any) -> None:
    """Best effort and atomic; a cache that cannot be written only costs the next run a YAML parse."""
    if cache_dir is None:
        return
    import marshal
    import tempfile

    try:
        blob = marshal.dumps({"key": key, "python": sys.hexversion, "data": data})
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".config.")
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, os.path.join(cache_dir, CACHE_FILE))
    except (OSError, ValueError):  # ValueError: YAML with dates etc. has no marshal form
        pass
