"""--mesh-plan: the full mesh, a ring, or K destinations per node; the pairs planned, measured and counted."""

import re
from collections import Counter
from pathlib import Path

import pytest

from pytest_meshperf.cluster.inventory import Cluster, Node, local_cluster
from pytest_meshperf.errors import UsageError
from pytest_meshperf.plan.plans import parse_plan, planned_links, recorded_plan
from pytest_meshperf.plan.schedule import mesh_pairs, rounds

from support.meshcheck import iter_entries, node_overlaps, validate_mesh_file
from support.usage import MESH_TEST, assert_usage_error


def pair_ids(pairs):
    return [pair.id for pair in pairs]


def test_full_is_the_mesh_and_the_default():
    cluster = local_cluster(5)
    assert pair_ids(mesh_pairs(cluster, parse_plan("full", cluster))) == pair_ids(mesh_pairs(cluster))
    assert str(parse_plan(None, cluster)) == "full"


def test_ring_sends_each_node_to_the_next():
    cluster = local_cluster(4)
    assert pair_ids(mesh_pairs(cluster, parse_plan("ring", cluster))) == [
        "node1->node2", "node2->node3", "node3->node4", "node4->node1"]


@pytest.mark.parametrize("nodes, k", [(5, 1), (7, 3), (12, 4)])
def test_a_sample_sends_and_receives_k_per_node_in_rounds_from_its_seed(nodes, k):
    cluster = local_cluster(nodes)
    plan = parse_plan(f"sample:{k},seed=7", cluster)
    pairs = mesh_pairs(cluster, plan)
    assert len(pairs) == nodes * k and len(set(pair_ids(pairs))) == len(pairs)
    assert set(Counter(p.src.name for p in pairs).values()) == {k} == set(Counter(p.dst.name for p in pairs).values())
    assert all(p.src.name != p.dst.name for p in pairs)
    for group in rounds(pairs):   # each round stays disjoint: a node sends once and receives once
        assert len({p.src.name for p in group}) == len(group) == len({p.dst.name for p in group})
    assert pair_ids(mesh_pairs(cluster, parse_plan(f"sample:{k},seed=7", cluster))) == pair_ids(pairs)
    assert str(plan) == f"sample:{k},seed=7" and recorded_plan(str(plan)) == plan
    others = [pair_ids(mesh_pairs(cluster, parse_plan(f"sample:{k},seed={seed}", cluster))) for seed in range(8)]
    assert len({tuple(sorted(ids)) for ids in others}) > 1   # the seed chooses


def test_planned_links_follow_roles():
    nodes = [("c1", "client", {}), ("s1", "server", {}), ("b1", "both", {})]
    assert sorted(planned_links(nodes, recorded_plan("full"))) == [("b1", "s1"), ("c1", "b1"), ("c1", "s1")]


RACKS = {"node1": "r1", "node2": "r1", "node3": "r1", "node4": "r2", "node5": "r2", "node6": "r2"}


def racked(count=6):
    return Cluster("file", "hosts.yaml", tuple(Node(f"node{i}", f"127.0.0.{10 + i}", labels={"rack": RACKS[f"node{i}"]})
                                               for i in range(1, count + 1)))


def inside_racks():
    return {(a, b) for a in RACKS for b in RACKS if a != b and RACKS[a] == RACKS[b]}


@pytest.mark.parametrize("text, across", [
    ("groups:rack", {("node1", "node4"), ("node4", "node1")}),   # one representative per rack: the first
    ("groups:rack,across=2", {(a, b) for a in ("node1", "node2", "node4", "node5")
                              for b in ("node1", "node2", "node4", "node5") if RACKS[a] != RACKS[b]}),
])
def test_groups_are_full_meshes_inside_with_representatives_between(text, across):
    cluster = racked()
    plan = parse_plan(text, cluster)
    pairs = mesh_pairs(cluster, plan)
    assert {(p.src.name, p.dst.name) for p in pairs} == inside_racks() | across
    assert len(pairs) == len(inside_racks() | across)
    for group in rounds(pairs):
        assert len({p.src.name for p in group}) == len(group) == len({p.dst.name for p in group})
    assert recorded_plan(str(plan)) == plan
    nodes = [(n.name, n.role, dict(n.labels)) for n in cluster.nodes]
    assert sorted(planned_links(nodes, plan)) == sorted((p.src.name, p.dst.name) for p in pairs)


@pytest.mark.parametrize("text, fragment", [
    ("star", "choose one of full, ring, sample:K[,seed=S]"),
    ("sample", "give how many destinations each node sends to"),
    ("sample:0", "give how many destinations"),
    ("sample:3", "3 nodes have at most 2 destinations each"),
    ("sample:1,seed=x", "'seed=x' is not seed=NUMBER"),
    ("sample:1,colour=red", "'colour=red' is not seed=NUMBER"),
    ("groups:", "name the inventory label whose values are the groups"),
    ("groups:zone", "have no label 'zone'"),
    ("groups:rack,across=0", "'across=0' is not across=NUMBER"),
])
def test_bad_plans_are_usage_errors(text, fragment):
    cluster = racked(3) if text.startswith("groups") else local_cluster(3)
    with pytest.raises(UsageError) as info:
        parse_plan(text, cluster)
    assert fragment in str(info.value) and str(info.value).startswith("--mesh-plan ")


def test_a_bad_plan_on_the_command_line_is_pytests_usage_error(pytester):
    pytester.makepyfile(MESH_TEST.format(mark="duration=1"))
    assert_usage_error(pytester.runpytest_subprocess("--mesh-plan", "sample:9"), "--mesh-plan sample:9",
                       "at most 2 destinations")


def test_a_sampled_run_measures_the_plan_records_it_and_misses_nothing(pytester, mesh_out):
    pytester.makepyfile(MESH_TEST.format(mark="duration=1"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cluster", "local:5", "--mesh-out",
                                           str(mesh_out), "--mesh-plan", "sample:2,seed=3")
    result.assert_outcomes(passed=10)
    doc = validate_mesh_file(str(Path(mesh_out) / "latest" / "mesh.json"))
    cluster = local_cluster(5)
    assert doc["run"]["parameters"]["plan"] == "sample:2,seed=3"
    assert {(src, dst) for src, dst, _, _ in iter_entries(doc)} == \
        {(p.src.name, p.dst.name) for p in mesh_pairs(cluster, parse_plan("sample:2,seed=3", cluster))}
    assert node_overlaps(doc) == []
    report = (Path(mesh_out) / "latest" / "report.html").read_text()
    assert re.search(r'data-count="missing"><b>0</b>', report), "a pair the plan left out is not missing"


def test_a_groups_run_on_a_labelled_inventory_measures_exactly_the_plan(pytester, mesh_out):
    hosts = "hosts:\n" + "".join(f"  - {{name: {name}, address: 127.0.0.{10 + i}, labels: {{rack: {rack}}}}}\n"
                                 for i, (name, rack) in enumerate(RACKS.items(), start=1))
    pytester.path.joinpath("hosts.yaml").write_text(hosts)
    pytester.makepyfile(MESH_TEST.format(mark="duration=1"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cluster", "hosts.yaml", "--mesh-out",
                                           str(mesh_out), "--mesh-plan", "groups:rack")
    result.assert_outcomes(passed=14)
    doc = validate_mesh_file(str(Path(mesh_out) / "latest" / "mesh.json"))
    assert doc["run"]["parameters"]["plan"] == "groups:rack,across=1"
    assert {(src, dst) for src, dst, _, _ in iter_entries(doc)} == inside_racks() | {("node1", "node4"),
                                                                                      ("node4", "node1")}
    report = (Path(mesh_out) / "latest" / "report.html").read_text()
    assert re.search(r'data-count="missing"><b>0</b>', report)
