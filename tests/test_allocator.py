"""The allocation policy: filter steps with reasons, ranking, distinct VFs, NoCandidate explanations."""

from __future__ import annotations

import pytest
from vf_values import CX5_VF, I350_VF, lease, pf_vfs, vf

from vfplugin.allocator import DomainContext, choose, explain
from vfplugin.config import Pool
from vfplugin.errors import NoCandidate
from vfplugin.request import NicRequest

pytestmark = pytest.mark.pure

WEB = DomainContext(uuid="uuid-web1", name="web1")
POOLS = (Pool("fast", ("eth2", "eth3"), I350_VF), Pool("cx", ("eth4",), CX5_VF), Pool("void", ("eth9",)))
ETH2 = pf_vfs("eth2", 4, bus=0x0A)
ETH3 = pf_vfs("eth3", 4, bus=0x0B)
ALL = ETH2 + ETH3


def nic(selector: str, value: str, nic_id: str = "net0") -> NicRequest:
    return NicRequest(id=nic_id, selector=selector, value=value)


def addr(v) -> str:  # type: ignore[no-untyped-def]
    return str(v.address)


def test_pool_request_drops_vfs_outside_the_pool_with_the_reason():
    cx = vf("eth4", 0, bus=0x0C, model=CX5_VF)
    [choice] = choose([nic("pool", "fast")], ALL + [cx], [], WEB, POOLS)
    assert choice.vf.pf in ("eth2", "eth3")
    assert ("selector", addr(cx), "not in pool fast") in choice.dropped
    assert all(c.vf.model == I350_VF for c in choice.ranked)


def test_vf_held_live_by_another_domain_is_dropped_naming_the_holder():
    leases = [lease(addr(ETH2[0]), "db1")]
    [choice] = choose([nic("pf", "eth2")], ALL, leases, WEB, POOLS)
    assert choice.vf == ETH2[1]
    assert ("held", addr(ETH2[0]), "held by db1") in choice.dropped


def test_stale_lease_does_not_hold_its_vf():
    leases = [lease(addr(ETH2[0]), "db1", stale=True)]
    [choice] = choose([nic("vf", addr(ETH2[0]))], ALL, leases, WEB, POOLS)
    assert choice.vf == ETH2[0]
    assert "stale lease of db1 will be taken over" in choice.ranked[0].reasons


def test_vf_bound_to_vfio_pci_without_a_lease_is_dropped():
    foreign = vf("eth2", 0, bus=0x0A, driver="vfio-pci")
    vfs = [foreign] + ETH2[1:]
    [choice] = choose([nic("pf", "eth2")], vfs, [], WEB, POOLS)
    assert choice.vf == ETH2[1]
    assert ("vfio", addr(foreign), "bound to vfio-pci outside vfplugin") in choice.dropped


def test_vf_bound_to_vfio_pci_under_this_domains_lease_is_kept():
    mine = vf("eth2", 0, bus=0x0A, driver="vfio-pci")
    leases = [lease(addr(mine), "web1", uuid=WEB.uuid)]
    [choice] = choose([nic("pf", "eth2")], [mine] + ETH2[1:], leases, WEB, POOLS)
    assert choice.vf == mine
    assert choice.ranked[0].reasons[0] == "sticky: nic net0 had it last"


def test_sticky_vf_comes_first_even_against_numa():
    domain = DomainContext(uuid="u", name="web1", numa_nodes=frozenset({0}))
    far = vf("eth3", 3, bus=0x0B, numa=1)
    [choice] = choose([nic("pool", "fast")], ETH2 + [far], [], domain, POOLS, sticky={"net0": addr(far)})
    assert choice.vf == far
    reasons = choice.ranked[0].reasons
    assert reasons[:2] == ("sticky: nic net0 had it last", "NUMA node 1 is not the domain's 0")


def test_numa_node_of_the_domain_wins_over_spread_and_address():
    domain = DomainContext(uuid="u", name="web1", numa_nodes=frozenset({1}))
    eth3 = pf_vfs("eth3", 4, bus=0x0B, numa=1)
    leases = [lease(addr(eth3[0]), "db1")]  # eth3 is the busier PF, yet on the right node
    [choice] = choose([nic("pool", "fast")], ETH2 + eth3, leases, domain, POOLS)
    assert choice.vf == eth3[1]
    assert "NUMA node 1 matches the domain's 1" in choice.ranked[0].reasons


def test_spread_prefers_the_pf_with_fewer_leases():
    leases = [lease(addr(ETH2[0]), "db1")]
    [choice] = choose([nic("pool", "fast")], ALL, leases, WEB, POOLS)
    assert choice.vf == ETH3[0]
    assert "PF eth3: 0 leases of other domains" in choice.ranked[0].reasons


def test_several_nics_get_distinct_vfs_spread_across_pfs():
    nics = [nic("pool", "fast", "net0"), nic("pool", "fast", "net1"), nic("pool", "fast", "net2")]
    choices = choose(nics, ALL, [], WEB, POOLS)
    chosen = [c.vf for c in choices]
    assert len(set(chosen)) == 3
    assert [v.pf for v in chosen] == ["eth2", "eth3", "eth2"]
    assert ("chosen", addr(chosen[0]), "chosen for nic net0") in choices[1].dropped


def test_least_recently_released_first_never_released_counts_as_oldest():
    vfs = ETH2[:3]
    released = {addr(vfs[0]): 200.0, addr(vfs[1]): 100.0}
    [choice] = choose([nic("pf", "eth2")], vfs, [], WEB, POOLS, last_released=released)
    assert [c.vf for c in choice.ranked] == [vfs[2], vfs[1], vfs[0]]
    assert "never released" in choice.ranked[0].reasons
    assert "last released 1970-01-01 00:01:40 UTC" in choice.ranked[1].reasons


def test_ties_are_broken_by_address():
    [choice] = choose([nic("pf", "eth2")], list(reversed(ETH2)), [], WEB, POOLS)
    assert [c.vf for c in choice.ranked] == ETH2


def test_explicit_vf_is_served_before_a_pool_nic_could_take_it():
    nics = [nic("pool", "fast", "net0"), nic("vf", addr(ETH2[0]), "net1")]
    a, b = choose(nics, ETH2, [], WEB, POOLS)
    assert b.vf == ETH2[0] and a.vf != ETH2[0]


def test_model_and_pf_selectors():
    cx = pf_vfs("eth4", 2, bus=0x0C, model=CX5_VF)
    [by_model] = choose([nic("model", CX5_VF)], ALL + cx, [], WEB, POOLS)
    [by_pf] = choose([nic("pf", "eth3")], ALL + cx, [], WEB, POOLS)
    assert by_model.vf == cx[0]
    assert by_pf.vf == ETH3[0]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (("pool", "slow"), "(pool=slow): unknown pool 'slow' (configured pools: fast, cx, void)"),
        (("pool", "void"), "no VF for nic 'net0' (pool=void): pool void is empty (no VF of PF eth9)"),
        (("model", "E810"), "unknown model 'E810' (models of the managed VFs: 'I350 Ethernet Controller"),
        (("pf", "eth7"), "PF eth7 is not managed or has no VFs (PFs with VFs: eth2, eth3)"),
        (("vf", "0000:99:00.1"), "VF 0000:99:00.1 is not managed (not a VF of a PF in sriov_nics"),
    ],
)
def test_no_candidate_says_what_is_unknown_or_empty(request_, message):
    with pytest.raises(NoCandidate) as e:
        choose([nic(*request_)], ALL, [], WEB, POOLS)
    assert message in str(e.value)


def test_all_vfs_of_a_pool_held_names_the_count_and_the_holders():
    leases = [lease(addr(v), "web1" if i % 2 else "db1", uuid=f"u{i % 2}") for i, v in enumerate(ALL)]
    other = DomainContext(uuid="uuid-app", name="app")
    with pytest.raises(NoCandidate) as e:
        choose([nic("pool", "fast")], ALL, leases, other, POOLS)
    assert str(e.value) == "no VF for nic 'net0' (pool=fast): all 8 VFs of pool fast are held (by db1, web1)"


def test_explicit_vf_held_by_another_domain_names_it():
    with pytest.raises(NoCandidate) as e:
        choose([nic("vf", addr(ETH2[1]))], ALL, [lease(addr(ETH2[1]), "db1")], WEB, POOLS)
    assert str(e.value) == f"no VF for nic 'net0' (vf={addr(ETH2[1])}): VF {addr(ETH2[1])} is held by db1"


def test_mixed_reasons_are_counted():
    vfs = ETH2[:3] + [vf("eth2", 3, bus=0x0A, driver="vfio-pci")]
    leases = [lease(addr(ETH2[0]), "db1"), lease(addr(ETH2[1]), "db2")]
    nics = [nic("pf", "eth2", "net0"), nic("pf", "eth2", "net1")]
    with pytest.raises(NoCandidate) as e:
        choose(nics, vfs, leases, WEB, POOLS)
    assert str(e.value) == (
        "no VF for nic 'net1' (pf=eth2): all 4 VFs of PF eth2 are unavailable: 2 held (by db1, db2), "
        "1 bound to vfio-pci outside vfplugin, 1 chosen for other nics of this domain"
    )


def test_explain_reports_every_nic_without_raising():
    rankings = explain([nic("pool", "slow", "net0"), nic("pf", "eth3", "net1")], ALL, [], WEB, POOLS)
    assert rankings[0].error is not None and not rankings[0].ranked
    assert rankings[1].error is None and rankings[1].ranked[0].vf == ETH3[0]


def test_more_nics_than_vfs_fails_on_the_nic_left_without_one():
    nics = [nic("pf", "eth2", f"net{i}") for i in range(5)]
    with pytest.raises(NoCandidate) as e:
        choose(nics, ETH2, [], WEB, POOLS)
    assert "nic 'net4'" in str(e.value) and "4 chosen for other nics of this domain" in str(e.value)
