"""The validated configuration is cached (marshal) keyed by the file's identity, so the hook need not import
PyYAML on every event; any change to the file, or a damaged cache, falls back to reading the YAML."""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vfplugin.config import CACHE_FILE, load
from vfplugin.errors import ConfigError

pytestmark = pytest.mark.pure


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_second_load_comes_from_the_cache_without_importing_yaml(tmp_path):
    config = write(tmp_path / "c.yaml", "sriov_nics: [eth2]\nreservation_ttl: 60\n")
    cache = tmp_path / "cache"
    assert load(str(config), cache_dir=cache).sriov_nics == ("eth2",)
    assert (cache / CACHE_FILE).exists()
    probe = (
        "import sys; from pathlib import Path; from vfplugin.config import load; "
        f"c = load({str(config)!r}, cache_dir=Path({str(cache)!r})); "
        "print(c.sriov_nics, c.reservation_ttl, 'yaml' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "('eth2',) 60 False"


def test_an_edited_file_is_read_again(tmp_path):
    config = write(tmp_path / "c.yaml", "sriov_nics: [eth2]\n")
    cache = tmp_path / "cache"
    load(str(config), cache_dir=cache)
    write(config, "sriov_nics: [eth2, eth4]\n")
    os.utime(config, ns=(1, 1))  # even with an mtime going backwards: size and inode are in the key too
    assert load(str(config), cache_dir=cache).sriov_nics == ("eth2", "eth4")


def test_a_damaged_cache_is_ignored(tmp_path):
    config = write(tmp_path / "c.yaml", "sriov_nics: [eth2]\n")
    cache = tmp_path / "cache"
    load(str(config), cache_dir=cache)
    (cache / CACHE_FILE).write_text("{not json")
    assert load(str(config), cache_dir=cache).sriov_nics == ("eth2",)


def test_an_invalid_file_is_never_cached(tmp_path):
    config = write(tmp_path / "c.yaml", "bogus: 1\n")
    cache = tmp_path / "cache"
    with pytest.raises(ConfigError):
        load(str(config), cache_dir=cache)
    assert not (cache / CACHE_FILE).exists()


def test_the_cache_directory_is_private(tmp_path):
    config = write(tmp_path / "c.yaml", "sriov_nics: [eth2]\n")
    cache = tmp_path / "cache"
    load(str(config), cache_dir=cache)
    assert (cache.stat().st_mode & 0o777) == 0o700
    assert (cache / CACHE_FILE).stat().st_mode & 0o077 == 0


def test_a_cache_file_others_could_have_written_is_not_read(tmp_path):
    """marshal trusts its input: a cache file writable by group or others is ignored, and the YAML read."""
    config = write(tmp_path / "c.yaml", "sriov_nics: [eth2]\n")
    cache = tmp_path / "cache"
    load(str(config), cache_dir=cache)
    st = config.stat()
    key = (str(config.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    forged = marshal.dumps({"key": key, "python": sys.hexversion, "data": {"sriov_nics": ["eth9"]}})
    cached = cache / CACHE_FILE
    cached.write_bytes(forged)
    cached.chmod(0o666)
    assert load(str(config), cache_dir=cache).sriov_nics == ("eth2",)  # (and the cache written afresh)
    cached.write_bytes(forged)
    cached.chmod(0o600)  # the same entry, private: it is what the cache is for
    assert load(str(config), cache_dir=cache).sriov_nics == ("eth9",)


def test_only_the_default_configuration_is_cached_in_the_system_cache(tmp_path, monkeypatch):
    # The hook and every root `vfctl --config X` (tests too) share /run/vfplugin: caching X there would evict
    # the production entry, and the hook would pay a YAML parse on its next run.
    import vfplugin.config as config_module

    used: list[object] = []
    monkeypatch.setattr(config_module, "_cache_read", lambda cache_dir, key: used.append(cache_dir))
    monkeypatch.setattr(config_module, "_cache_write", lambda cache_dir, key, data: used.append(cache_dir))
    other = write(tmp_path / "c.yaml", "sriov_nics: [eth2]\n")
    assert load(str(other)).sriov_nics == ("eth2",)
    monkeypatch.setenv("VFPLUGIN_CONFIG", str(other))
    assert load().sriov_nics == ("eth2",)
    assert config_module.CACHE_DIR not in used
    # an explicit cache directory is the caller's choice, whatever the file
    load(str(other), cache_dir=tmp_path / "cache")
    assert used[-1] == tmp_path / "cache"


def test_another_configuration_is_cached_where_vfplugin_config_cache_says(tmp_path, monkeypatch):
    import vfplugin.config as config_module

    other = write(tmp_path / "c.yaml", "sriov_nics: [eth2]\n")
    monkeypatch.setenv("VFPLUGIN_CONFIG_CACHE", str(tmp_path / "private"))
    assert load(str(other)).sriov_nics == ("eth2",)
    assert (tmp_path / "private" / config_module.CACHE_FILE).exists()
