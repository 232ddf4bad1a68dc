"""Host state from the configuration (``vfs:``, ``eswitch:``): validation, the plan, ``vfctl host apply`` on a
writable copy of a fixture tree (the writes land in its sysfs files), doctor's drift lines, and the unit."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, require_tool
from tests.hosts import copy_host, write_config
from vfplugin.checks import FAIL, OK, WARN
from vfplugin.cli import main
from vfplugin.config import load, parse
from vfplugin.errors import ConfigError
from vfplugin.hoststate import PfState, apply, drift, plan_pf, read_state
from vfplugin.ledger import Ledger, Want

pytestmark = pytest.mark.fixtures


# --- configuration -------------------------------------------------------------------------------------------


def test_vfs_and_eswitch_keys_are_validated_naming_the_key() -> None:
    cfg = parse({"sriov_nics": ["eth2"], "ovs_offload_nics": ["eth3"], "vfs": {"eth2": 7, "eth3": 4},
                 "eswitch": {"eth3": "switchdev"}})
    assert (cfg.vfs, cfg.eswitch, cfg.host_pfs) == ((("eth2", 7), ("eth3", 4)), (("eth3", "switchdev"),),
                                                    ("eth2", "eth3"))
    for data, line in (
        ({"vfs": {"eth5": 2}}, "vfs.eth5: PF 'eth5' is not in sriov_nics or ovs_offload_nics; add it there first"),
        ({"sriov_nics": ["eth2"], "vfs": {"eth2": -1}}, "vfs.eth2: VF count -1 is invalid: must be 0-65535"),
        ({"sriov_nics": ["eth2"], "vfs": [7]}, "vfs: expected a mapping of PF -> value, e.g. {eth2: 7}"),
        ({"sriov_nics": ["eth2"], "eswitch": {"eth2": "fast"}}, "eswitch.eth2: expected legacy or switchdev"),
        ({"sriov_nics": ["eth2"], "eswitch": {"eth2": "switchdev"}},
         "eswitch.eth2: a switchdev PF's representors go into OVS: list it in ovs_offload_nics too"),
    ):
        with pytest.raises(ConfigError) as e:
            parse(data)
        assert line in str(e.value) and "\n" not in str(e.value)


# --- the plan (pure) -------------------------------------------------------------------------------------------


def test_a_changed_count_goes_via_zero_and_a_mode_change_unbinds_sets_and_rebinds() -> None:
    cfg = parse({"ovs_offload_nics": ["eth3"]})
    pf = PfState("eth3", "0000:3b:00.0", num_vfs=2, total_vfs=8, mode="legacy")
    steps = plan_pf(cfg, pf, 4, "switchdev")
    assert [(s.kind, s.value or " ".join(s.argv)) for s in steps] == [
        ("write", "0"), ("write", "4"), ("unbind", ""),
        ("run", "devlink dev eswitch set pci/0000:3b:00.0 mode switchdev"), ("bind", ""),
    ]
    assert plan_pf(cfg, PfState("eth3", "0000:3b:00.0", 4, 8, "switchdev"), 4, "switchdev") == []
    first = plan_pf(cfg, PfState("eth3", "0000:3b:00.0", 0, 8, "legacy"), 3, None)
    assert [(s.kind, s.value) for s in first] == [("write", "3")]  # from 0: no detour


# --- vfctl host apply on a fixture copy -----------------------------------------------------------------------


def host_config(tmp_path: Path, **keys: Any) -> tuple[Path, Path]:
    root = copy_host(tmp_path, "example")
    return write_config(tmp_path, "example", sysfs_root=root, **keys), root


def test_apply_creates_the_configured_vfs_in_the_fixture_sysfs(tmp_path: Path) -> None:
    config, root = host_config(tmp_path, vfs={"eth2": 7})
    ran: list[list[str]] = []
    outcome = apply(load(str(config)), runner=ran.append)
    assert outcome.failures == []
    assert outcome.done == ["load vfio-pci", "eth2: remove its 4 VFs (the count changes)", "eth2: 4 -> 7 VFs"]
    assert ran == [["modprobe", "vfio-pci"]]  # the fixture has no sys/module/vfio_pci
    assert (root / "sys/bus/pci/devices/0000:0a:00.0/sriov_numvfs").read_text() == "7\n"


def test_apply_puts_a_pf_into_switchdev_in_the_order_the_driver_needs(tmp_path: Path) -> None:
    config, root = host_config(tmp_path, eswitch={"eth3": "switchdev"}, vfs={"eth3": 4})
    (root / "sys/module/vfio_pci").mkdir(parents=True)
    order: list[str] = []
    unbind = root / "sys/bus/pci/drivers/mlx5_core/unbind"
    bind = root / "sys/bus/pci/drivers/mlx5_core/bind"
    unbind.write_text("")
    bind.write_text("")

    def devlink(argv: list[str]) -> None:
        # when devlink runs, every VF bound to mlx5_core must already have been unbound, and none rebound
        order.append(f"devlink after unbind={unbind.read_text().strip()} bind={bind.read_text().strip()}")

    outcome = apply(load(str(config)), runner=devlink, mode_of=lambda address: "legacy")
    assert outcome.failures == []
    assert outcome.done == ["eth3: unbind its VFs from their driver", "eth3: eswitch legacy -> switchdev",
                            "eth3: bind its VFs to their driver again"]
    # 3b:00.2 and .3 are on mlx5_core (the last write stays in the file), .4 and .5 on vfio-pci: left alone
    assert order == ["devlink after unbind=0000:3b:00.3 bind="]
    assert bind.read_text() == "0000:3b:00.3\n"


def test_apply_leaves_a_pf_whose_vf_a_domain_holds_unless_forced(tmp_path: Path, capsys: Any) -> None:
    config, root = host_config(tmp_path, vfs={"eth2": 2})
    (root / "sys/module/vfio_pci").mkdir(parents=True)
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        ledger.claim("u-web", "web1", [Want("0000:0a:10.4", "net0")])
    numvfs = root / "sys/bus/pci/devices/0000:0a:00.0/sriov_numvfs"
    before = numvfs.read_text()
    assert main(["--config", str(config), "host", "apply"]) == 1
    assert "PF 'eth2': not changed while domains hold 0000:0a:10.4 (web1)" in capsys.readouterr().err
    assert numvfs.read_text() == before
    assert main(["--config", str(config), "host", "apply", "--force"]) == 0
    assert numvfs.read_text() == "2\n"
    assert main(["--config", str(config), "host", "apply"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "host: already as configured"


def test_dry_run_says_what_it_would_do_and_writes_nothing(tmp_path: Path, capsys: Any) -> None:
    config, root = host_config(tmp_path, vfs={"eth2": 5})
    (root / "sys/module/vfio_pci").mkdir(parents=True)
    numvfs = root / "sys/bus/pci/devices/0000:0a:00.0/sriov_numvfs"
    before = numvfs.read_text()
    assert main(["--config", str(config), "host", "apply", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "would: eth2: remove its 4 VFs (the count changes)", "would: eth2: 4 -> 5 VFs"]
    assert numvfs.read_text() == before


def test_a_count_above_what_the_nic_supports_is_refused_and_other_pfs_still_done(tmp_path: Path) -> None:
    config, root = host_config(tmp_path, vfs={"eth2": 99, "eth3": 0})
    (root / "sys/module/vfio_pci").mkdir(parents=True)
    outcome = apply(load(str(config)), runner=lambda argv: None, mode_of=lambda a: None)
    assert outcome.failures == ["vfs.eth2: PF 'eth2' supports at most 7 VFs, not 99; lower it in the configuration"]
    assert (root / "sys/bus/pci/devices/0000:3b:00.0/sriov_numvfs").read_text() == "0\n"


# --- doctor: drift ------------------------------------------------------------------------------------------------


def test_drift_names_each_difference_and_the_fix(tmp_path: Path) -> None:
    cfg = load(str(write_config(tmp_path, "example", vfs={"eth2": 7, "eth3": 4}, eswitch={"eth3": "switchdev"})))
    states = {pf: read_state(cfg, pf, mode_of=lambda address: "legacy") for pf in cfg.host_pfs}
    lines = [(c.name, c.status, c.detail, c.fix) for c in drift(cfg, states)]
    fix = "vfctl host apply (what vfplugin-host.service runs at boot)"
    assert lines == [
        ("host state of eth2", FAIL, "4 VFs, the configuration says 7", fix),
        ("host state of eth3", FAIL, "eswitch legacy, the configuration says switchdev", fix),
    ]
    states = {pf: read_state(cfg, pf, mode_of=lambda address: None) for pf in cfg.host_pfs}
    assert [c.status for c in drift(cfg, states)] == [FAIL, WARN]
    cfg = load(str(write_config(tmp_path, "example", vfs={"eth2": 4})))
    assert [(c.status, c.detail) for c in drift(cfg, {"eth2": read_state(cfg, "eth2")})] == [
        (OK, "4 VFs as configured")]


def test_doctor_prints_the_drift_line(tmp_path: Path, capsys: Any) -> None:
    main(["--config", str(write_config(tmp_path, "example", vfs={"eth2": 6})), "doctor"])
    out = capsys.readouterr().out
    assert "host state of eth2" in out and "4 VFs, the configuration says 6" in out


# --- the unit ---------------------------------------------------------------------------------------------------


def test_the_host_unit_runs_before_libvirt_and_the_agent_and_verifies() -> None:
    unit = (ROOT / "packaging/systemd/vfplugin-host.service").read_text()
    before = next(line for line in unit.splitlines() if line.startswith("Before="))
    for daemon in ("libvirtd.service", "virtqemud.service", "vfplugind.service"):
        assert daemon in before
    assert "Type=oneshot" in unit and "RemainAfterExit=yes" in unit
    assert "ExecStart=/usr/bin/vfctl host apply" in unit
    require_tool("systemd-analyze")
    unit_path = str(ROOT / "packaging/systemd/vfplugin-host.service")
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", unit_path], capture_output=True, text=True,
                          timeout=60)
    problems = [line for line in done.stderr.splitlines() if "vfplugin-host" in line and "/usr/bin/vfctl" not in line]
    assert problems == [], done.stderr
