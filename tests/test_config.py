"""The configuration: every bad input is one line naming the key, and vfctl turns it into exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.hosts import host_settings
from vfplugin.config import Config, Network, Pool, config_path, load, parse
from vfplugin.errors import ConfigError

pytestmark = pytest.mark.pure

FULL = {
    "sriov_nics": ["eth2"],
    "ovs_offload_nics": ["eth3"],
    "networks": ["eth1/br0/192.168.100.111", "eth3/br1/bcast0"],
    "pools": {"fast": {"pfs": ["eth3"], "model": "ConnectX-5 Virtual Function"}, "any": {}},
    "ledger": "/var/lib/vfplugin/ledger.sqlite3",
    "mac_prefix": "52:54:00",
    "reservation_ttl": 300,
    "sysfs_root": "/",
}


def error_of(data: object) -> str:
    with pytest.raises(ConfigError) as info:
        parse(data, "/etc/vfplugin/vfplugin.yaml")
    text = str(info.value)
    assert "\n" not in text
    assert info.value.exit_code == 2
    return text


def test_the_design_example_parses_into_values() -> None:
    config = parse(FULL, "/etc/vfplugin/vfplugin.yaml")
    assert config.sriov_nics == ("eth2",)
    assert config.ovs_offload_nics == ("eth3",)
    assert config.managed_pfs == ("eth2", "eth3")
    assert config.networks[1] == Network("eth3", "br1", "bcast0")
    assert config.pool("fast") == Pool("fast", ("eth3",), "ConnectX-5 Virtual Function")
    assert config.pool("any") == Pool("any", (), None)
    assert config.bridge_for("eth3") == "br1" and config.bridge_for("eth2") is None
    assert config.pools_of("eth3", "ConnectX-5 Virtual Function") == ("fast", "any")
    assert config.pools_of("eth2", "I350 Ethernet Controller Virtual Function") == ("any",)
    assert config.source == "/etc/vfplugin/vfplugin.yaml"


def test_an_empty_document_gives_the_defaults() -> None:
    config = parse(None)
    assert config == Config()
    assert config.mac_prefix == "52:54:00" and config.reservation_ttl == 300
    assert config.sysfs_root == "/" and config.ledger == "/var/lib/vfplugin/ledger.sqlite3"


def test_unknown_key_is_named() -> None:
    text = error_of({"sriov_nic": ["eth2"]})
    assert text.startswith("/etc/vfplugin/vfplugin.yaml: sriov_nic: unknown key")
    assert "sriov_nics" in text  # the message lists the known keys


def test_unknown_pool_key_is_named() -> None:
    text = error_of({"sriov_nics": ["eth2"], "pools": {"p": {"pfs": ["eth2"], "vlan": 3}}})
    assert ": pools.p.vlan: unknown key" in text


def test_unknown_pool_keys_of_mixed_types_are_named() -> None:
    # found by test_validation_properties: sorting {3, "vlan"} raised TypeError, a traceback instead of a line
    text = error_of({"sriov_nics": ["eth2"], "pools": {"p": {"pfs": ["eth2"], "vlan": 3, 3: None}}})
    assert ": pools.p.3: unknown key" in text


@pytest.mark.parametrize(
    "data, key",
    [
        ({"sriov_nics": "eth2"}, "sriov_nics"),
        ({"sriov_nics": [2]}, "sriov_nics"),
        ({"ovs_offload_nics": {"eth3": 1}}, "ovs_offload_nics"),
        ({"networks": "eth3/br1/bcast0"}, "networks"),
        ({"networks": ["eth3/br1"]}, "networks"),
        ({"pools": ["fast"]}, "pools"),
        ({"sriov_nics": ["eth2"], "pools": {"p": {"pfs": "eth2"}}}, "pools.p.pfs"),
        ({"sriov_nics": ["eth2"], "pools": {"p": {"model": 5}}}, "pools.p.model"),
        ({"ledger": 7}, "ledger"),
        ({"ledger": "relative/ledger.sqlite3"}, "ledger"),
        ({"sysfs_root": "fixtures"}, "sysfs_root"),
        ({"reservation_ttl": "soon"}, "reservation_ttl"),
        ({"reservation_ttl": True}, "reservation_ttl"),
        ({"reservation_ttl": 0}, "reservation_ttl"),
        (["sriov_nics"], "(top level)"),
    ],
)
def test_wrong_types_name_the_key(data: object, key: str) -> None:
    assert f"vfplugin.yaml: {key}: " in error_of(data)


@pytest.mark.parametrize("prefix", ["52-54-00", "53:54:00", "52:54:00:00:00:00", "zz", ""])
def test_bad_mac_prefix_is_refused(prefix: str) -> None:
    assert ": mac_prefix: MAC prefix" in error_of({"mac_prefix": prefix})


def test_mac_prefix_is_normalised_to_lower_case() -> None:
    assert parse({"mac_prefix": "02:AB"}).mac_prefix == "02:ab"


def test_pool_naming_a_pf_that_is_not_managed_is_refused() -> None:
    text = error_of({"sriov_nics": ["eth2"], "pools": {"fast": {"pfs": ["eth3"]}}})
    assert ": pools.fast.pfs: PF 'eth3' is not in sriov_nics or ovs_offload_nics" in text


def test_a_pf_listed_twice_is_refused() -> None:
    assert ": sriov_nics: a PF is listed twice" in error_of({"sriov_nics": ["eth2", "eth2"]})


def test_missing_default_file_gives_defaults(tmp_path: Path) -> None:
    # The default path is not under the test's control; $VFPLUGIN_CONFIG naming a missing file takes the
    # same branch (no --config: a missing file is not an error).
    config = load(None, environ={"VFPLUGIN_CONFIG": str(tmp_path / "absent.yaml")})
    assert config == Config() and config.source is None


def test_missing_file_named_with_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(str(tmp_path / "absent.yaml"))
    assert str(info.value) == f"{tmp_path / 'absent.yaml'}: (file): no such file"


def test_config_flag_wins_over_environment() -> None:
    env = {"VFPLUGIN_CONFIG": "/from/env.yaml"}
    assert config_path("/from/flag.yaml", env) == "/from/flag.yaml"
    assert config_path(None, env) == "/from/env.yaml"
    assert config_path(None, {}) == "/etc/vfplugin/vfplugin.yaml"


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("sriov_nics: [eth2\nledger: /x\n")
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert "not valid YAML" in str(info.value) and ": line " in str(info.value)


def test_example_config_is_the_example_hosts_settings() -> None:
    example = load(str(ROOT / "examples" / "vfplugin.yaml"))
    fixture = parse(host_settings("example"))
    assert example.sysfs_root == "/"
    for key in ("sriov_nics", "ovs_offload_nics", "networks", "pools", "mac_prefix", "reservation_ttl"):
        assert getattr(example, key) == getattr(fixture, key), key


# --- through vfctl: exit status 2 and one line on stderr ------------------------------------------------


def vfctl(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vfplugin.cli", *argv], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


@pytest.mark.parametrize(
    "text, key",
    [
        ("sriov_nic: [eth2]\n", "sriov_nic"),
        ("sriov_nics: eth2\n", "sriov_nics"),
        ("mac_prefix: '01:00:5e'\n", "mac_prefix"),
        ("sriov_nics: [eth2]\npools:\n  fast: {pfs: [eth3]}\n", "pools.fast.pfs"),
    ],
)
def test_vfctl_list_exits_2_with_one_line_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "vfplugin.yaml"
    path.write_text(text)
    result = vfctl("--config", str(path), "list")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"vfctl: {path}: {key}: "), result.stderr


def test_vfctl_with_a_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = vfctl("--config", str(tmp_path / "nope.yaml"), "list")
    assert result.returncode == 2
    assert result.stderr == f"vfctl: {tmp_path / 'nope.yaml'}: (file): no such file\n"


def test_pool_settings_are_read_with_the_requests_rules_and_named_when_wrong() -> None:
    base = {"sriov_nics": ["eth2"]}
    config = parse({**base, "pools": {"fast": {"pfs": ["eth2"], "settings": {
        "trust": True, "spoofchk": False, "link_state": "auto", "max_tx_rate": 1000}}}})
    assert config.pools[0].settings == (
        ("trust", True), ("spoofchk", False), ("link_state", "auto"), ("max_tx_rate", 1000))
    for settings, key, words in (
        ({"trust": "maybe"}, "pools.fast.settings", "expected on or off"),
        ({"vlan": 3}, "pools.fast.settings.vlan", "unknown setting"),
        ({"min_tx_rate": 5, "max_tx_rate": 2}, "pools.fast.settings", "above max_tx_rate"),
        ([1], "pools.fast.settings", "expected a mapping"),
    ):
        with pytest.raises(ConfigError) as e:
            parse({**base, "pools": {"fast": {"pfs": ["eth2"], "settings": settings}}})
        assert f": {key}: " in str(e.value) and words in str(e.value) and "\n" not in str(e.value)


def test_a_vf_taken_from_a_pool_gets_the_pools_settings_where_its_request_says_nothing() -> None:
    from tests.hookrun import domain_xml, hostdev_interface
    from vfplugin.addresses import PciAddress
    from vfplugin.domread import read_domain
    from vfplugin.plan import holdings

    config = parse({"sriov_nics": ["eth2"], "pools": {"fast": {"pfs": ["eth2"], "settings": {
        "trust": True, "max_tx_rate": 1000}}}})
    nics = '<vfp:nic id="net0" pool="fast" max_tx_rate="500"/><vfp:nic id="net1" pf="eth2"/>'
    devices = (hostdev_interface("0000:0a:10.0", "52:54:00:00:00:01", "net0")
               + hostdev_interface("0000:0a:10.4", "52:54:00:00:00:02", "net1"))
    facts = read_domain(domain_xml("web1", nics=nics, devices=devices).encode())
    where = {PciAddress.parse("0000:0a:10.0"): ("eth2", 0), PciAddress.parse("0000:0a:10.4"): ("eth2", 1)}
    held = {h.nic_id: h.settings() for h in holdings(facts, config, where.get)}
    assert held == {"net0": {"trust": True, "max_tx_rate": 500}, "net1": {}}  # only pool= requests; theirs first
