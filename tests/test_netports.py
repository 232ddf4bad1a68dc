"""netports.plan: which reclaim ports a guarded network needs so that libvirt's pool and the ledger agree."""

from __future__ import annotations

import pytest
from vf_values import lease

from vfplugin.addresses import PciAddress
from vfplugin.ledger import Lease
from vfplugin.netdef import NetworkFacts, read
from vfplugin.netports import Port, plan, port_xml, reclaim_uuid

pytestmark = pytest.mark.pure

VF0, VF1, VF2 = "0000:0a:10.0", "0000:0a:10.4", "0000:0a:11.0"
OTHER_PF_VF = "0000:3b:00.2"
WHERE = {VF0: ("eth2", 0), VF1: ("eth2", 1), VF2: ("eth2", 2), OTHER_PF_VF: ("eth3", 0)}
NET = NetworkFacts("vfnet", "net-uuid", "hostdev", ("eth2",), (), 0)


def locate(address: PciAddress) -> tuple[str, int] | None:
    return WHERE.get(str(address))


def everyone_exists(_uuid: str) -> bool:
    return True


def through_network(vf: str, holder: str, port: str) -> Lease:
    held = lease(vf, holder)
    return Lease(**{**{k: getattr(held, k) for k in held.__slots__}, "network": "vfnet", "port": port})


def test_a_vf_vfplugin_holds_in_the_pool_gets_a_reclaim_port_owned_by_its_domain():
    todo = plan(NET, [], [lease(VF0, "l2a"), lease(OTHER_PF_VF, "l2b")], locate, everyone_exists)
    assert todo.create == (Port(reclaim_uuid("net-uuid", VF0, "uuid-l2a"), VF0, "uuid-l2a", "l2a"),)
    assert todo.delete == () and todo.conflicts == ()


def test_a_lease_taken_through_the_network_gets_its_own_port_back_after_a_restart():
    todo = plan(NET, [], [through_network(VF1, "l2n", "port-of-l2n")], locate, everyone_exists)
    assert [(p.uuid, p.vf, p.owner_name) for p in todo.create] == [("port-of-l2n", VF1, "l2n")]


def test_ports_in_step_with_the_ledger_change_nothing():
    ports = [Port(reclaim_uuid("net-uuid", VF0, "uuid-l2a"), VF0, "uuid-l2a", "l2a"),
             Port("port-of-l2n", VF1, "uuid-l2n", "l2n")]
    todo = plan(NET, ports, [lease(VF0, "l2a"), through_network(VF1, "l2n", "port-of-l2n")], locate,
                everyone_exists)
    assert (todo.create, todo.delete, todo.conflicts) == ((), (), ())


def test_a_reclaim_port_whose_lease_went_is_deleted_and_so_is_a_port_of_a_domain_that_is_gone():
    mine = Port(reclaim_uuid("net-uuid", VF0, "uuid-l2a"), VF0, "uuid-l2a", "l2a")
    gone = Port("libvirts", VF2, "uuid-gone", "gone")
    todo = plan(NET, [mine, gone], [], locate, lambda uuid: uuid != "uuid-gone")
    assert todo.delete == ((mine, "no lease (vfplugin's reclaim port)"), (gone, "domain gone is gone"))
    assert todo.create == ()


def test_a_port_of_a_live_domain_on_a_vf_the_ledger_gives_another_is_reported_not_touched():
    theirs = Port("libvirts", VF0, "uuid-l2n", "l2n")
    todo = plan(NET, [theirs], [lease(VF0, "l2a")], locate, everyone_exists)
    assert todo.delete == () and todo.create == ()  # one port per VF: libvirt would refuse a second
    assert todo.conflicts == (
        "network vfnet: VF 0000:0a:10.0 has a port of domain l2n but the ledger gives it to l2a",)


def test_stale_leases_get_no_port():
    assert plan(NET, [], [lease(VF0, "l2a", stale=True)], locate, everyone_exists).create == ()


def test_a_listed_pool_counts_only_its_addresses():
    listed = NetworkFacts("vfnet", "net-uuid", "hostdev", (), (PciAddress.parse(VF1),), 0)
    todo = plan(listed, [], [lease(VF0, "l2a"), lease(VF1, "l2b")], locate, everyone_exists)
    assert [p.vf for p in todo.create] == [VF1]


def test_the_port_xml_reads_back_as_the_port():
    port = Port(reclaim_uuid("n", VF1, "u"), VF1, "6b1b0b5e-0000-4000-8000-000000000001", "web<1>",
                "52:54:00:00:00:01")
    _, facts = read(port_xml(port).encode(), "test")
    assert facts is not None
    assert (facts.uuid, str(facts.address), facts.owner_uuid, facts.owner_name, facts.mac, facts.plug) == (
        port.uuid, VF1, port.owner_uuid, "web<1>", "52:54:00:00:00:01", "hostdev-pci")
