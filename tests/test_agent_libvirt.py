"""Tier 5: vfplugind against a real libvirtd running the hook (fixture sysfs, as tests/test_libvirt.py).

The agent runs as its own process (``python -m vfplugin.agent``, or /usr/bin/vfplugind with
VFPLUGIN_INSTALLED=1) on the daemon's configuration; every test starts it after emptying the ledger and stops
it afterwards. Domains are defined and started with plain ``virsh``; ``vfctl`` is never involved. The example
host's pool i350 has two VFs the allocator may offer (0000:0a:10.0 and 0000:0a:10.4; the other two are bound
to vfio-pci outside vfplugin).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.hookrun import domain_xml
from tests.test_libvirt import (  # noqa: F401 - daemon and ledger_path are fixtures used here
    INSTALLED,
    PREFIX,
    _pid,
    daemon,
    leases,
    ledger_path,
    start_libvirtd,
    virsh,
)
from vfplugin import agentpid
from vfplugin.ledger import Ledger, Want

pytestmark = pytest.mark.libvirt

POOL = {"0000:0a:10.0", "0000:0a:10.4"}
OTHER = "11111111-2222-3333-4444-555555555555"


class AgentProcess:
    def __init__(self, config: Path, ledger: Path, log: Path, metrics: str = "off") -> None:
        self.config, self.ledger, self.log, self.metrics = config, ledger, log, metrics
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = ["/usr/bin/vfplugind"] if INSTALLED else [sys.executable, "-m", "vfplugin.agent"]
        argv += ["--config", str(self.config), "--metrics-address", self.metrics]
        env = {**os.environ, "VFPLUGIN_LOG_STDERR": "1"}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
        wait_for(lambda: "watching" in self.log.read_text(), 15, "the agent did not connect", self)

    def kill(self, signum: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(signum)
        return self.proc.wait(timeout=15)

    def tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else ""


def wait_for(condition: Callable[[], object], seconds: float, what: str, agent: AgentProcess | None = None) -> float:
    """Poll ``condition`` until it holds; the seconds it took. Fails with ``what`` (and the agent's log)."""
    start = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - start
        if time.monotonic() - start > seconds:
            log = f"\n--- agent log ---\n{agent.tail()}" if agent else ""
            raise AssertionError(f"{what} within {seconds} s{log}")
        time.sleep(0.05)


@pytest.fixture
def agent(daemon: Path, ledger_path: Path, tmp_path: Path) -> Iterator[AgentProcess]:  # noqa: F811
    running = AgentProcess(daemon, ledger_path, tmp_path / "vfplugind.log")
    running.start()
    try:
        yield running
    finally:
        if running.proc is not None and running.proc.poll() is None:
            running.kill()


def define_request(tmp_path: Path, name: str, nics: str = '<vfp:nic id="net0" pool="i350"/>') -> None:
    source = tmp_path / f"{name}.xml"
    source.write_text(domain_xml(name, nics=nics))
    virsh("define", str(source), check=True)


def pointer(name: str, nic: str = "net0") -> str | None:
    """The VF the persistent XML of ``name`` points ``nic`` at, as libvirt has it."""
    from vfplugin.domread import read_domain

    facts = read_domain(virsh("dumpxml", "--inactive", name, check=True).stdout.encode())
    return next((str(r.address) for r in facts.hostdevs if r.nic_id == nic), None)


def test_a_request_defined_with_plain_virsh_gets_a_free_vf_and_starts(agent, tmp_path):
    name = f"{PREFIX}plainweb"
    define_request(tmp_path, name)
    took = wait_for(lambda: pointer(name) in POOL, 2, "no VF written into the definition", agent)
    assert "ua-vfplugin-net0" in virsh("dumpxml", "--inactive", name).stdout
    assert leases(agent.ledger) == []  # a pointer, not a reservation: nothing locks the pool
    started = virsh("start", name)
    # no SR-IOV here: libvirt fails at device set-up, after the hook's prepare claimed the VF
    assert "no VF chosen" not in started.stderr and "vfplugin:" not in started.stderr, started.stderr
    assert "passthrough of host PCI devices" in started.stderr
    with Ledger.open(agent.ledger) as ledger:
        actions = [(e.action, e.outcome) for e in ledger.history(domain=name)]
    assert ("materialize", "ok") in actions and ("claim", "ok") in actions and ("release", "ok") in actions
    print(f"materialized in {took:.2f} s")


def test_a_stopped_domain_whose_vf_another_domain_claimed_is_repointed(agent, tmp_path):
    name = f"{PREFIX}repoint"
    define_request(tmp_path, name)
    wait_for(lambda: pointer(name) in POOL, 2, "no VF written into the definition", agent)
    first = pointer(name)
    assert first is not None
    with Ledger.open(agent.ledger) as ledger:  # what the hook's prepare does for another domain's start
        ledger.claim(OTHER, "web1", [Want(vf=first, nic_id="net0")])
    wait_for(lambda: pointer(name) == (POOL - {first}).pop(), 2, "not re-pointed to the free VF", agent)
    started = virsh("start", name)
    assert "vfplugin:" not in started.stderr and "passthrough of host PCI devices" in started.stderr
    assert [(lease.vf, lease.domain_name) for lease in leases(agent.ledger)] == [(first, "web1")]


def test_a_request_that_cannot_be_satisfied_is_journaled_once_and_served_on_release(agent, tmp_path):
    with Ledger.open(agent.ledger) as ledger:  # both VFs of the pool run elsewhere
        ledger.claim(OTHER, "web1", [Want(vf=v, nic_id=f"n{i}") for i, v in enumerate(sorted(POOL))])
    name = f"{PREFIX}waits"
    define_request(tmp_path, name)

    def failures() -> list:
        with Ledger.open(agent.ledger) as ledger:
            return [e for e in ledger.history(domain=name) if e.action == "materialize" and e.outcome == "failed"]

    wait_for(failures, 2, "the unsatisfiable request was not journaled", agent)
    virsh("desc", name, "touched")  # another definition: the agent looks again, and journals nothing new
    time.sleep(1.0)
    assert len(failures()) == 1
    with Ledger.open(agent.ledger) as ledger:
        ledger.release(OTHER, vfs=["0000:0a:10.4"], reason="test: web1 stopped")
    wait_for(lambda: pointer(name) == "0000:0a:10.4", 2, "not served when a VF was released", agent)


def test_the_agent_reconnects_after_libvirtd_restarts_and_reconciles(agent, tmp_path):
    with Ledger.open(agent.ledger) as ledger:  # an active lease of a domain that runs nowhere
        ledger.claim(OTHER, "gone", [Want(vf="0000:0a:10.0", nic_id="net0")])
    os.kill(_pid("/run/libvirtd.pid") or 0, signal.SIGKILL)
    time.sleep(0.5)
    start_libvirtd()
    wait_for(lambda: agent.log.read_text().count("watching") >= 2, 20, "the agent did not reconnect", agent)
    wait_for(lambda: leases(agent.ledger) == [], 10, "reconcile did not release the leaked lease", agent)
    name = f"{PREFIX}after"  # and libvirt's events reach it again
    define_request(tmp_path, name)
    wait_for(lambda: pointer(name) in POOL, 2, "no VF written after the reconnection", agent)


def test_killed_mid_way_the_agent_loses_and_doubles_no_lease_and_catches_up(agent, tmp_path):
    with Ledger.open(agent.ledger) as ledger:  # vfctl define of web1, whose start follows (reconcile keeps it)
        ledger.reserve(OTHER, "web1", [Want(vf="0000:0a:10.0", nic_id="net0")])
    before = {(lease.vf, lease.domain_uuid, lease.state) for lease in leases(agent.ledger)}
    names = [f"{PREFIX}k{i}" for i in range(6)]
    for name in names:
        define_request(tmp_path, name)
    assert agent.kill(signal.SIGKILL) == -signal.SIGKILL  # in the middle of materializing them
    assert not agentpid.running(str(agent.ledger))  # the hook now says the agent is not running
    assert {(lease.vf, lease.domain_uuid, lease.state) for lease in leases(agent.ledger)} == before
    late = f"{PREFIX}late"  # defined while no agent runs
    define_request(tmp_path, late)
    refused = virsh("start", late)
    assert (
        f"vfplugin: domain {late}: nic 'net0' has no VF chosen yet; vfplugind is not running: "
        f"systemctl start vfplugind, or run 'vfctl start {late}'"
    ) in refused.stderr
    agent.start()
    for name in [*names, late]:
        wait_for(lambda n=name: pointer(n) == "0000:0a:10.4", 5, f"{name} not caught up", agent)
    assert {(lease.vf, lease.domain_uuid, lease.state) for lease in leases(agent.ledger)} == before
    assert "Traceback" not in agent.log.read_text()


def test_while_the_agent_runs_the_hook_refuses_as_it_always_did(agent, tmp_path):
    name = f"{PREFIX}held"
    source = tmp_path / f"{name}.xml"  # written by hand at web1's VF, no request: not the agent's to move
    from tests.hookrun import hostdev_interface

    source.write_text(domain_xml(name, devices=hostdev_interface("0000:0a:10.4")))
    virsh("define", str(source), check=True)
    with Ledger.open(agent.ledger) as ledger:
        ledger.claim(OTHER, "web1", [Want(vf="0000:0a:10.4", nic_id="net0")])
    started = virsh("start", name)
    assert (
        f"vfplugin: VF 0000:0a:10.4 is in use by domain \"web1\"; run 'vfctl start {name}' to choose a free VF"
    ) in started.stderr


def test_the_agent_serves_the_hosts_metrics_on_loopback(daemon, ledger_path, tmp_path):  # noqa: F811
    import socket
    import urllib.request

    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    served = AgentProcess(daemon, ledger_path, tmp_path / "vfplugind.log", metrics=f"127.0.0.1:{port}")
    served.start()
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        served.kill()
    assert "vfplugin_" in body and "# TYPE" in body
