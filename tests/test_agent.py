"""vfplugind's policy (startable.py, pure), its pid file, and the hook's refusal with and without the agent.

The agent against a real libvirtd: tests/test_agent_libvirt.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.hookrun import domain_xml, hostdev_interface, install, run_hook
from tests.hosts import write_config
from vfplugin import agentpid
from vfplugin.addresses import PciAddress
from vfplugin.domread import read_domain
from vfplugin.errors import AgentRunning
from vfplugin.inventory import VfInfo
from vfplugin.ledger import Lease, Ledger, Want
from vfplugin.startable import Defined, live_leases, pending, pointed_at, tiers, why_not_startable

UUID_A = "aaaaaaaa-0000-0000-0000-000000000001"
UUID_B = "bbbbbbbb-0000-0000-0000-000000000002"
VF0, VF1, VF2 = "0000:0a:10.0", "0000:0a:10.4", "0000:0a:11.0"
POOL = '<vfp:nic id="net0" pool="i350"/>'


def defined(name: str, uuid: str, vf: str | None = None, active: bool = False, nics: str = POOL) -> Defined:
    devices = hostdev_interface(vf, nic_id="net0") if vf else ""
    facts = read_domain(domain_xml(name, uuid=uuid, nics=nics, devices=devices).encode())
    return Defined(uuid=uuid, name=name, active=active, facts=facts)


def lease(vf: str, uuid: str, name: str, stale: bool = False) -> Lease:
    return Lease(vf, uuid, name, "net0", None, None, "active", "boot", None, 1.0, None, None, stale)


def vf(address: str) -> VfInfo:
    a = PciAddress.parse(address)
    return VfInfo(a, "eth2", PciAddress.parse("0000:0a:00.0"), 0, "8086", "1520", "I350", 0, 1, "igbvf", None, None)


@pytest.mark.pure
def test_a_request_without_a_vf_is_not_startable():
    assert why_not_startable(defined("web1", UUID_A), {}, {VF0}) == "nic net0 has no VF chosen"


@pytest.mark.pure
def test_a_vf_free_or_held_by_the_domain_itself_is_startable_without_any_reservation():
    web1 = defined("web1", UUID_A, VF0)
    assert why_not_startable(web1, {}, {VF0}) is None
    assert why_not_startable(web1, {VF0: lease(VF0, UUID_A, "web1")}, {VF0}) is None


@pytest.mark.pure
def test_a_vf_another_domain_holds_live_makes_a_stopped_domain_unstartable_but_a_stale_lease_does_not():
    web1 = defined("web1", UUID_A, VF0)
    held = {VF0: lease(VF0, UUID_B, "db1")}
    assert why_not_startable(web1, held, {VF0}) == "nic net0: VF 0000:0a:10.0 is held by db1"

    assert why_not_startable(web1, live_leases([lease(VF0, UUID_B, "db1", stale=True)]), {VF0}) is None


@pytest.mark.pure
def test_running_domains_and_domains_without_requests_are_left_alone():
    assert why_not_startable(defined("web1", UUID_A, active=True), {}, {VF0}) is None
    assert why_not_startable(defined("plain", UUID_A, nics=""), {}, set()) is None


@pytest.mark.pure
def test_a_network_nic_needs_its_interface_and_never_a_vf():
    nics = '<vfp:nic id="net0" network="fastnet"/>'
    bare = defined("web1", UUID_A, nics=nics)
    assert why_not_startable(bare, {}, {VF0}) == "nic net0 has no interface on network fastnet"
    from vfplugin.domread import read_domain as read

    xml = domain_xml("web1", uuid=UUID_A, nics=nics, devices=(
        "<interface type='network'><mac address='52:54:00:00:00:07'/><source network='fastnet'/>"
        "<alias name='ua-vfplugin-net0'/></interface>"))
    assert why_not_startable(Defined(UUID_A, "web1", False, read(xml.encode())), {}, set()) is None


@pytest.mark.pure
def test_a_vf_that_left_the_host_makes_the_domain_unstartable():
    assert why_not_startable(defined("web1", UUID_A, VF2), {}, {VF0}) == "nic net0: VF 0000:0a:11.0 is not on this host"


@pytest.mark.pure
def test_offers_put_vfs_nobody_else_points_at_first_and_keep_the_domains_own():
    vfs = [vf(VF0), vf(VF1), vf(VF2)]
    others = [defined("a", UUID_B, VF0), defined("b", "cccccccc-0000-0000-0000-000000000003", VF0),
              defined("c", "dddddddd-0000-0000-0000-000000000004", VF1)]
    pointed = pointed_at([*others, defined("me", UUID_A, VF0)], except_uuid=UUID_A)
    assert pointed == {VF0: 2, VF1: 1}
    offers = [[str(v.address) for v in tier] for tier in tiers(vfs, pointed, own=[])]
    assert offers == [[VF2], [VF1, VF2], [VF0, VF1, VF2]]
    assert [str(v.address) for v in tiers(vfs, pointed, own=[VF0])[0]] == [VF0, VF2]


@pytest.mark.pure
def test_a_running_domain_points_at_nothing_others_avoid():
    assert pointed_at([defined("run", UUID_B, VF0, active=True)], except_uuid=UUID_A) == {}


@pytest.mark.pure
def test_pending_keeps_a_domain_whose_latest_agent_entry_is_a_failure():
    class E:
        def __init__(self, uuid: str, action: str, outcome: str) -> None:
            self.domain_uuid, self.action, self.outcome = uuid, action, outcome

    events = [E(UUID_A, "materialize", "failed"), E(UUID_B, "materialize", "failed"), E(UUID_B, "claim", "ok"),
              E(UUID_B, "repoint", "ok")]
    assert list(pending(events)) == [UUID_A]


@pytest.mark.sqlite
def test_one_agent_per_ledger_and_its_lock_goes_with_the_process(tmp_path):
    ledger = str(tmp_path / "ledger.sqlite3")
    assert not agentpid.running(ledger)
    fd = agentpid.hold(ledger)
    try:
        assert agentpid.running(ledger)
        assert Path(agentpid.path(ledger)).read_text() == f"{os.getpid()}\n"
        import subprocess
        import sys

        code = "import sys; from vfplugin import agentpid; agentpid.hold(sys.argv[1])"
        done = subprocess.run([sys.executable, "-c", code, ledger], capture_output=True, text=True, check=False)
        assert AgentRunning.__name__ in done.stderr and f"pid {os.getpid()}" in done.stderr
    finally:
        os.close(fd)
    assert not agentpid.running(ledger)  # the file stays, the lock does not: no stale "running"


@pytest.fixture
def hook_host(tmp_path: Path) -> tuple[Path, Path]:
    return install(tmp_path), write_config(tmp_path, pools={"i350": {"pfs": ["eth2"]}})


@pytest.mark.hook
def test_with_the_agent_running_the_hook_refuses_exactly_as_before(hook_host, tmp_path):
    hook, config = hook_host
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        ledger.claim(UUID_B, "web1", [Want(vf=VF1, nic_id="net0")])
    fd = agentpid.hold(str(tmp_path / "ledger.sqlite3"))
    try:
        busy = run_hook(hook, "db1", "prepare", "begin", domain_xml("db1", devices=hostdev_interface(VF1)), config)
        fresh = run_hook(hook, "fresh", "prepare", "begin", domain_xml("fresh", nics=POOL), config)
    finally:
        os.close(fd)
    assert busy.status == 1
    assert busy.stderr == (
        f"vfplugin: VF {VF1} is in use by domain \"web1\"; run 'vfctl start db1' to choose a free VF\n"
    )
    assert fresh.status == 1
    assert fresh.stderr == (
        "vfplugin: domain fresh: nic 'net0' has no VF chosen yet; run 'vfctl start fresh' "
        "(it chooses a VF, writes it into the domain and starts it)\n"
    )


@pytest.mark.hook
def test_without_the_agent_the_refusal_names_it(hook_host):
    hook, config = hook_host
    fresh = run_hook(hook, "fresh", "prepare", "begin", domain_xml("fresh", nics=POOL), config)
    assert fresh.status == 1
    assert fresh.stderr == (
        "vfplugin: domain fresh: nic 'net0' has no VF chosen yet; vfplugind is not running: "
        "systemctl start vfplugind, or run 'vfctl start fresh'\n"
    )


@pytest.mark.sqlite
def test_doctor_names_the_agent_and_each_request_it_could_not_satisfy(tmp_path):
    from vfplugin.checks import OK, WARN
    from vfplugin.config import load
    from vfplugin.doctor import agent_checks

    cfg = load(str(write_config(tmp_path, pools={"i350": {"pfs": ["eth2"]}})))
    with Ledger.open(cfg.ledger) as ledger:
        ledger.journal("materialize", "failed", domain_uuid=UUID_A, domain_name="web1", detail="no VF for nic 'net0'")
        ledger.journal("materialize", "failed", domain_uuid=UUID_B, domain_name="db1", detail="no VF for nic 'net0'")
        ledger.journal("repoint", "ok", domain_uuid=UUID_B, domain_name="db1", detail="net0: VF ...")
    [agent, web1] = agent_checks(cfg)
    assert agent.status == WARN and agent.fix.startswith("systemctl start vfplugind")
    assert (web1.name, web1.status, web1.detail) == ("domain web1", WARN, "no VF: no VF for nic 'net0'")
    fd = agentpid.hold(cfg.ledger)
    try:
        assert agent_checks(cfg)[0].status == OK
    finally:
        os.close(fd)


# --- the agent against libvirt's test driver (test:///default: in this process, no daemon, no hook) --------
# Every connection this process opens to test:///default shares one driver state, so the test talks to the
# same "libvirt" as the agent running in a thread. No hook runs there: the tests make the claims the hook would.


@pytest.fixture(scope="module")
def event_loop() -> None:
    import threading

    import libvirt

    from vfplugin.agent import _event_loop

    libvirt.virEventRegisterDefaultImpl()
    threading.Thread(target=_event_loop, name="libvirt-events", daemon=True).start()


@pytest.fixture
def test_driver(event_loop, tmp_path):
    import threading

    import libvirt

    from vfplugin.agent import Agent
    from vfplugin.config import load

    cfg = load(str(write_config(tmp_path, ovs_offload_nics=[], pools={"i350": {"pfs": ["eth2"]}})))
    Ledger.open(cfg.ledger).close()  # made before two threads of one process could both create it
    agent = Agent(cfg, "test:///default")
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    conn = libvirt.open("test:///default")
    names: list[str] = []
    # connected, reconciled (which releases active leases of domains that do not run) and read: now the tests
    # may make claims
    assert eventually(lambda: agent._synced, 10)
    try:
        yield agent, conn, names
    finally:
        agent.stopping.set()
        thread.join(10)
        for name in names:
            dom = conn.lookupByName(name)
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        conn.close()


def define_in(conn, names: list[str], name: str, uuid: str, nics: str = POOL) -> None:
    conn.defineXML(domain_xml(name, uuid=uuid, nics=nics).replace("type='qemu'", "type='test'"))
    names.append(name)


def vf_of(conn, name: str) -> str | None:
    facts = read_domain(conn.lookupByName(name).XMLDesc(2).encode())
    return next((str(r.address) for r in facts.hostdevs if r.nic_id == "net0"), None)


def eventually(condition, seconds: float = 3.0) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def journal(agent, name: str) -> list[tuple[str, str]]:
    with Ledger.open(agent.cfg.ledger) as ledger:
        return [(e.action, e.outcome) for e in ledger.history(domain=name) if e.action in ("materialize", "repoint")]


@pytest.mark.sqlite
def test_the_agent_materializes_once_and_does_not_loop_on_its_own_redefinition(test_driver):
    agent, conn, names = test_driver
    define_in(conn, names, "tdweb", UUID_A)
    assert eventually(lambda: vf_of(conn, "tdweb") in {VF0, VF1})
    import time

    time.sleep(1.0)  # its own DEFINED event and journal entry come back to it: nothing more to do
    assert journal(agent, "tdweb") == [("materialize", "ok")]
    with Ledger.open(agent.cfg.ledger) as ledger:
        assert ledger.leases() == []  # a pointer, never a reservation


@pytest.mark.sqlite
def test_the_agent_repoints_a_stopped_domain_but_never_a_running_one(test_driver):
    agent, conn, names = test_driver
    define_in(conn, names, "tdstop", UUID_A)
    define_in(conn, names, "tdrun", UUID_B)
    assert eventually(lambda: vf_of(conn, "tdstop") is not None and vf_of(conn, "tdrun") is not None)
    conn.lookupByName("tdrun").create()
    running_vf, stopped_vf = vf_of(conn, "tdrun"), vf_of(conn, "tdstop")
    with Ledger.open(agent.cfg.ledger) as ledger:  # another domain claims both VFs
        ledger.claim("cccccccc-0000-0000-0000-000000000003", "other",
                     [Want(vf=v, nic_id=f"n{i}") for i, v in enumerate(sorted({running_vf, stopped_vf}))])
    free = ({VF0, VF1} - {running_vf, stopped_vf})
    if free:
        assert eventually(lambda: vf_of(conn, "tdstop") == next(iter(free)))
    else:
        assert eventually(lambda: ("repoint", "failed") in journal(agent, "tdstop"))
    import time

    time.sleep(0.5)
    assert vf_of(conn, "tdrun") == running_vf  # running: its definition is left alone


@pytest.mark.sqlite
def test_an_unsatisfiable_request_is_journaled_once_then_served_when_a_vf_is_released(test_driver):
    agent, conn, names = test_driver
    with Ledger.open(agent.cfg.ledger) as ledger:
        ledger.claim(UUID_B, "hog", [Want(vf=VF0, nic_id="a"), Want(vf=VF1, nic_id="b")])
    define_in(conn, names, "tdwait", UUID_A)
    assert eventually(lambda: ("materialize", "failed") in journal(agent, "tdwait"))
    for _ in range(3):  # more ledger changes and redefinitions: nothing new to say
        with Ledger.open(agent.cfg.ledger) as ledger:
            ledger.journal("note", "ok", detail="something else changed")
    import time

    time.sleep(0.5)
    assert journal(agent, "tdwait") == [("materialize", "failed")]
    with Ledger.open(agent.cfg.ledger) as ledger:
        ledger.release(UUID_B, vfs=[VF1], reason="test")
    assert eventually(lambda: vf_of(conn, "tdwait") == VF1)
    assert eventually(lambda: journal(agent, "tdwait") == [("materialize", "failed"), ("materialize", "ok")])
