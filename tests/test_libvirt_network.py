"""Tier 5: libvirt's hostdev networks next to a real libvirtd (its own, started by this module like
tests/test_libvirt.py's, with the network hook installed in /etc/libvirt/hooks/network.d/ before it starts).

There are no SR-IOV VFs on this machine: libvirt defines a network over ``<pf dev='eth2'>`` (the fixture host's
managed PF) but cannot start it, and refuses ``<address>`` entries that are not real VFs at define. So this
tier checks what vfctl sees of such networks (guarded whoever defined them, doctor, reconcile alongside); the
ports themselves (reclaim ports, counts, a network restart with domains running) are checked with real VFs by
the lab (tests/lab/scenario, steps net-*).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hookrun import vfctl
from tests.test_libvirt import INSTALLED, PREFIX, daemon, ledger_path, virsh  # noqa: F401 - fixtures
from vfplugin.nethook import script

pytestmark = pytest.mark.libvirt

NETWORK_HOOK = Path("/etc/libvirt/hooks/network.d/vfplugin")


@pytest.fixture(scope="module")
def network_hook() -> Iterator[Path]:
    """The network hook in place before the module's libvirtd starts (libvirt finds hooks at start)."""
    import sys

    if INSTALLED:
        assert os.access(NETWORK_HOOK, os.X_OK), f"{NETWORK_HOOK} is not installed"
        yield NETWORK_HOOK
        return
    saved = NETWORK_HOOK.parent.parent / "network.vfplugin.saved-by-vfplugin-tests"
    had = NETWORK_HOOK.exists()
    if had:
        os.rename(NETWORK_HOOK, saved)
    NETWORK_HOOK.parent.mkdir(parents=True, exist_ok=True)
    NETWORK_HOOK.write_text(script(sys.executable))
    NETWORK_HOOK.chmod(0o755)
    try:
        yield NETWORK_HOOK
    finally:
        NETWORK_HOOK.unlink(missing_ok=True)
        if had:
            os.rename(saved, NETWORK_HOOK)


@pytest.fixture
def networks(network_hook: Path, daemon: Path) -> Iterator[list[str]]:  # noqa: F811 - the imported fixture
    """Networks defined by a test (names appended to the list), removed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        virsh("net-destroy", name)
        virsh("net-undefine", name)


def net_define(tmp_path: Path, names: list[str], name: str, forward: str) -> None:
    path = tmp_path / f"{name}.xml"
    path.write_text(f"<network><name>{name}</name>{forward}</network>")
    virsh("net-define", str(path), check=True)
    names.append(name)


def test_a_hostdev_network_defined_with_plain_virsh_over_a_managed_pf_is_guarded(networks, tmp_path):
    net_define(tmp_path, networks, f"{PREFIX}vfnet", "<forward mode='hostdev' managed='yes'><pf dev='eth2'/></forward>")
    net_define(tmp_path, networks, f"{PREFIX}other", "<forward mode='hostdev' managed='yes'><pf dev='eth9'/></forward>")
    done = vfctl("network", "list", "--json")
    assert done.returncode == 0, done.stderr
    listed = {n["name"]: n for n in json.loads(done.stdout)}
    assert (listed[f"{PREFIX}vfnet"]["guarded"], listed[f"{PREFIX}vfnet"]["active"]) == (True, False)
    assert listed[f"{PREFIX}vfnet"]["vfs"] == 4  # eth2's VFs on the fixture host
    assert listed[f"{PREFIX}other"]["guarded"] is False  # eth9 is not in sriov_nics
    assert f"{PREFIX}vfnet" in vfctl("network", "list").stdout


def test_doctor_names_the_network_hook_and_the_guarded_network(networks, tmp_path):
    net_define(tmp_path, networks, f"{PREFIX}vfnet", "<forward mode='hostdev' managed='yes'><pf dev='eth2'/></forward>")
    done = vfctl("doctor")
    assert f"ok    network hook: {NETWORK_HOOK}" in done.stdout
    assert (f"warn  network {PREFIX}vfnet: guarded hostdev network, not active  -> fix: virsh net-start "
            f"{PREFIX}vfnet") in done.stdout


def test_reconcile_and_network_sync_run_next_to_a_guarded_network(networks, ledger_path, tmp_path):  # noqa: F811
    net_define(tmp_path, networks, f"{PREFIX}vfnet", "<forward mode='hostdev' managed='yes'><pf dev='eth2'/></forward>")
    done = vfctl("network", "sync")
    assert (done.returncode, done.stdout.strip()) == (0, "network sync: 0 fixed, 0 failed"), done.stderr
    done = vfctl("reconcile")
    assert done.returncode == 0, done.stdout + done.stderr


def test_network_define_of_a_pool_without_real_vfs_is_refused_in_one_line(networks):
    done = vfctl("network", "define", "i350", "--name", f"{PREFIX}pool")
    networks.append(f"{PREFIX}pool")
    assert done.returncode == 1
    assert done.stderr.startswith(f"vfctl: libvirt: define network {PREFIX}pool: ")
    assert "not an SR-IOV Virtual Function" in done.stderr and done.stderr.count("\n") == 1
