"""Schedules and per-node exclusivity: rounds of disjoint pairs, agent leases, xdist workers."""

import datetime
import signal
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from pytest_meshperf.agent.leases import Leases
from pytest_meshperf.cluster.inventory import Cluster, Node, local_cluster
from pytest_meshperf.plan.schedule import Schedule, mesh_pairs, plan_pairs, rounds

from support.meshcheck import iter_entries, node_overlaps, validate_mesh_file
from support.procs import alive, argv, descendants, inner_pytest, is_agent, is_iperf3, wait_for
from support.testbed_fixtures import netns_testbed

TCP_TEST = """
import pytest

@pytest.mark.meshperf(duration={duration})
def test_tcp(mesh_pair, measure):
    measure()
"""


@pytest.mark.parametrize("count", [2, 3, 4, 7])
def test_rounds_are_disjoint_and_cover_the_mesh(count):
    pairs = mesh_pairs(local_cluster(count))
    assert len(pairs) == count * (count - 1) and len(set(pairs)) == len(pairs)
    grouped = rounds(pairs)
    assert len(grouped) == count - 1
    for group in grouped:
        assert len({p.src.name for p in group}) == len(group) == len({p.dst.name for p in group})


def test_rounds_respect_roles():
    nodes = (Node("c1", "127.0.0.11", role="client"), Node("c2", "127.0.0.12", role="client"),
             Node("s1", "127.0.0.13", role="server"), Node("b1", "127.0.0.14", role="both"))
    pairs = mesh_pairs(Cluster("file", "x", nodes))
    assert {p.id for p in pairs} == {"c1->s1", "c1->b1", "c2->s1", "c2->b1", "b1->s1"}
    for group in rounds(pairs):
        assert len({p.src.name for p in group}) == len(group) == len({p.dst.name for p in group})


def _counts(group):
    return Counter(p.src.name for p in group), Counter(p.dst.name for p in group)


@pytest.mark.parametrize("count, limit, expected", [(5, 2, 2), (6, 2, 3), (7, 3, 2), (4, 1, 3)])
def test_rounds_pack_as_far_as_max_send_and_max_recv_allow(count, limit, expected):
    nodes = tuple(Node(f"n{i}", f"127.0.0.{10 + i}", max_send=limit, max_recv=limit) for i in range(1, count + 1))
    cluster = Cluster("file", "x", nodes)
    packed = plan_pairs(cluster, Schedule("rounds"))
    assert sorted(p.id for p in packed) == sorted(p.id for p in mesh_pairs(cluster))  # the same pairs
    grouped = rounds(packed)
    assert len(grouped) == expected and [p.round for p in packed] == sorted(p.round for p in packed)
    for group in grouped:
        sends, recvs = _counts(group)
        assert max(sends.values()) <= limit and max(recvs.values()) <= limit
    # sequential keeps one pair per slot of the unpacked order
    assert len(rounds(plan_pairs(cluster, Schedule("sequential")))) == count - 1


def test_one_node_at_the_default_limit_keeps_every_round_apart():
    nodes = tuple(Node(f"n{i}", f"127.0.0.{10 + i}", max_send=4, max_recv=4) for i in range(1, 5))
    nodes += (Node("n5", "127.0.0.15"),)  # max_send, max_recv unset: once each per round
    assert len(rounds(plan_pairs(Cluster("file", "x", nodes), Schedule("rounds")))) == 4


def test_disjoint_rounds_pack_even_at_the_default_limit():
    # two clients and two servers: the cyclic shifts give rounds on different nodes, which run together
    nodes = (Node("c1", "127.0.0.11", role="client"), Node("c2", "127.0.0.12", role="client"),
             Node("s1", "127.0.0.13", role="server"), Node("s2", "127.0.0.14", role="server"))
    unpacked = rounds(mesh_pairs(Cluster("file", "x", nodes)))
    packed = rounds(plan_pairs(Cluster("file", "x", nodes), Schedule("rounds")))
    assert [len(group) for group in unpacked] == [1, 2, 1] and [len(group) for group in packed] == [2, 2]
    for group in packed:
        sends, recvs = _counts(group)
        assert set(sends.values()) == {1} and set(recvs.values()) == {1}


def test_leases_capacity_owner_and_ttl():
    leases, alice, bob = Leases({"send": 2}), object(), object()

    def granted(*args):
        return leases.acquire(*args)[0] is not None

    first, _ = leases.acquire("send", "a", alice, 60)
    assert granted("send", "b", bob, 60) and not granted("send", "c", bob, 60)
    assert granted("recv", "a", alice, 60) and not granted("recv", "b", bob, 60)
    assert leases.release(first, owner=bob) is False   # only its owner releases a lease
    leases.release_owner(alice)                         # a connection that closed frees all it held
    assert granted("recv", "b", bob, 60) and granted("send", "d", bob, 60)
    short = Leases()
    assert short.acquire("cluster", "x", alice, 0.05)[0]
    time.sleep(0.1)
    assert short.acquire("cluster", "y", bob, 60)[0]    # an expired lease frees its place


def test_leases_reserve_free_cores_until_released():
    leases, alice, bob = Leases({"send": 1, "recv": 1}, cores=[0, 1, 2]), object(), object()
    send, send_cores = leases.acquire("send", "a", alice, 60, cores=2)
    recv, recv_cores = leases.acquire("recv", "b", bob, 60, cores=2)
    assert send_cores == [0, 1] and recv_cores == [2]   # free cores only, never one held by another lease
    assert leases.acquire("send", "c", bob, 60, cores=1) == (None, [])
    leases.release(send, owner=alice)
    assert leases.acquire("send", "c", bob, 60, cores=3)[1] == [0, 1]
    assert [h["cores"] for h in leases.holders()] == [[2], [0, 1]]


def run_mesh(pytester, cluster_args, out, *extra, duration=1):
    pytester.makepyfile(test_mesh=TCP_TEST.format(duration=duration))
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *cluster_args, "--mesh-out", str(out), *extra)


def results(out):
    doc = validate_mesh_file(str(Path(out) / "latest" / "mesh.json"))
    return doc, {(src, dst, key): entry["status"] for src, dst, key, entry in iter_entries(doc)}


@pytest.mark.usefixtures("netns_required")
def test_xdist_rounds_never_overlap_on_a_node(pytester, tmp_path):
    with netns_testbed(tmp_path / "tb", nodes=4) as tb:
        cluster = ["--cluster", tb.hosts_yaml, "--ssh-known-hosts", tb.known_hosts]
        parallel = run_mesh(pytester, cluster, tmp_path / "par", "-n", "4", duration=1)
        parallel.assert_outcomes(passed=12)
        doc, par = results(tmp_path / "par")
        assert node_overlaps(doc) == []
        by_round = {}
        for _, _, _, entry in iter_entries(doc):
            by_round.setdefault(entry["round"], []).append((entry["instances"][0]["start"],
                                                            entry["instances"][0]["end"]))
        # xdist hands out a source's pairs per worker (scheduling.py): each round ran side by side
        assert sorted(len(spans) for spans in by_round.values()) == [4, 4, 4]
        assert all(max(s for s, _ in spans) < min(e for _, e in spans) for spans in by_round.values()), by_round
        serial = run_mesh(pytester, cluster, tmp_path / "ser", duration=1)
        serial.assert_outcomes(passed=12)
        _, ser = results(tmp_path / "ser")
        assert par == ser


def test_sequential_runs_one_measurement_at_a_time(pytester, tmp_path):
    result = run_mesh(pytester, ["--cluster", "local:3"], tmp_path / "out", "-n", "3", "--mesh-schedule", "sequential")
    result.assert_outcomes(passed=6)
    doc, _ = results(tmp_path / "out")
    spans = sorted((e["instances"][0]["start"], e["instances"][0]["end"]) for _, _, _, e in iter_entries(doc))
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:]))
    assert doc["run"]["parameters"]["schedule"] == "sequential"


def test_killed_workers_processes_stop_with_them_and_free_their_ports(pytester, tmp_path):
    """kill -9 of the xdist workers mid-measurement: within seconds nothing they started runs on a node, no later
    measurement overlaps it, and their ports are free again (each node has exactly one port: a port left held
    would fail the node's next measurement with no_free_port)."""
    hosts = pytester.makefile(".yaml", hosts="""
        hosts:
          - {name: node1, address: 127.0.0.21, ports: 5311-5311}
          - {name: node2, address: 127.0.0.22, ports: 5312-5312}
          - {name: node3, address: 127.0.0.23, ports: 5313-5313}
    """)
    pytester.makepyfile(test_mesh=TCP_TEST.format(duration=8))
    out = tmp_path / "out"
    with inner_pytest(pytester, "--cluster", hosts, "-n", "2", "--mesh-out", out) as proc:
        def flows():
            # The flows of a measurement: iperf3 clients under an agent.  (Clients, not any iperf3: the agents'
            # 'iperf3 --version' probes run before xdist hands out tests, and workers killed then take xdist's
            # scheduling down with them: an INTERNALERROR, not the crash this test is about.)
            tools = [p for p in descendants(proc.pid) if is_iperf3(p)]
            return tools if any("-c" in argv(p) for p in tools) else None
        started = wait_for(flows, 60, what="a measurement's flows")
        killed_at = time.time()
        for worker in [c for c in psutil.Process(proc.pid).children() if not is_agent(c)]:
            worker.send_signal(signal.SIGKILL)
        # Within seconds (their measurement had about 8 s to go), none of the killed workers' flows is left.
        wait_for(lambda: not alive(started), 4, what="the killed workers' iperf3 processes to stop")
        gone_at = time.time()
        proc.wait(180)
    output = proc.stdout.read().decode()
    assert proc.returncode == 1, output
    assert "crashed" in output  # xdist reports the workers' tests, and replaces the workers
    doc, found = results(out)
    assert doc["run"]["interrupted"] is False
    assert set(found.values()) == {"passed"} and len(found) >= 3, found   # the rest measured, on one port each
    assert node_overlaps(doc) == []
    later = [e["instances"][0]["start"] for _, _, _, e in iter_entries(doc) if epoch(e["instances"][0]["start"]) >
             killed_at]
    assert later and all(epoch(start) >= gone_at - 0.1 for start in later)   # none overlapped a killed flow
    assert [p for p in descendants(proc.pid)] == []


def epoch(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]])
def test_progress_line_with_and_without_xdist(pytester, tmp_path, xdist):
    result = run_mesh(pytester, ["--cluster", "local:3"], tmp_path / "out", "--mesh-progress", "0", *xdist)
    result.assert_outcomes(passed=6)
    lines = [line for line in result.stdout.lines if line.startswith("meshperf: ")]
    assert [line.split(" pairs")[0] for line in lines] == [f"meshperf: {n}/6" for n in range(1, 6)]
    assert all(", 0 failed, 0 errors, elapsed " in line and ", ETA " in line for line in lines)
    # local:3 is two rounds of three pairs.  A round is done when its three tests reported; under xdist a
    # worker may report a pair of round 2 before another reports the last of round 1.
    done = [int(line.split("measured (")[1].split("/")[0]) for line in lines]
    assert all(rounds <= n // 3 for rounds, n in zip(done, range(1, 6))) and done == sorted(done)
    if not xdist:
        assert done == [0, 0, 1, 1, 1]
    quiet = run_mesh(pytester, ["--cluster", "local:2"], tmp_path / "quiet")  # default: at most every 10 s
    assert not [line for line in quiet.stdout.lines if line.startswith("meshperf: ")]


def test_progress_counts_and_eta():
    from pytest_meshperf.reports.progress import Progress
    progress = Progress(total=4, interval_s=0, started=100.0)
    progress.record("passed")
    progress.record("failed")
    progress.record("error")
    assert progress.line(now=130.0) == "meshperf: 3/4 pairs measured, 1 failed, 1 errors, elapsed 0:30, ETA 0:10"
    assert progress.due(now=131.0) is True
    progress.record("passed")
    assert progress.due(now=200.0) is False  # the run is complete: pytest's own summary follows
    rounds = Progress(total=3, interval_s=0, started=100.0, groups={"a": "t#1", "b": "t#1", "c": "t#2"})
    rounds.record("passed", "a")
    assert rounds.line(now=101.0).startswith("meshperf: 1/3 pairs measured (0/2 rounds), ")
    rounds.record("passed", "b")
    assert rounds.line(now=102.0).startswith("meshperf: 2/3 pairs measured (1/2 rounds), ")
