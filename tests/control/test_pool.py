"""AgentPool's lanes, on real local agents: a node's work runs in the same long-lived thread every time, so
its connection, and the leases taken through it, last from one round to the next."""

import threading

import pytest

from pytest_meshperf.cluster.inventory import load_cluster
from pytest_meshperf.control.controller import Controller
from pytest_meshperf.errors import AgentError
from pytest_meshperf.measure.runner import release_leases, take_leases


@pytest.fixture
def pool(tmp_path):
    controller = Controller(load_cluster("local:3"), str(tmp_path / "logs"), "pooltest")
    controller.start()
    try:
        assert controller.failed == {}
        yield controller.pool
    finally:
        controller.stop()


def thread_name(node, _):
    return threading.current_thread().name


def test_each_node_has_one_lane_and_keeps_it(pool):
    names = list(pool.endpoints)
    first = pool.on_nodes(thread_name, dict.fromkeys(names))
    second = pool.on_nodes(thread_name, dict.fromkeys(names))
    assert first == second, (first, second)
    assert len(set(first.values())) == len(names)
    assert threading.current_thread().name not in first.values()


def test_leases_taken_in_the_lanes_are_released_in_them(pool):
    # A lease belongs to the connection that took it: a release through any other connection is refused.
    a, b, _ = pool.endpoints
    held = take_leases(pool, [(a, "send"), (b, "recv")], ttl_s=60.0, holder="lanes")
    assert [(lease.node, lease.role) for lease in held] == [(a, "send"), (b, "recv")]
    other = pool.client(a).call("lease.acquire", {"role": "send", "holder": "other", "ttl_s": 5.0})
    assert not other["granted"], other
    release_leases(pool, held)
    for node, role in ((a, "send"), (b, "recv")):
        answer = pool.client(node).call("lease.acquire", {"role": role, "holder": "other", "ttl_s": 5.0})
        assert answer["granted"], (node, role, answer)


def test_a_lanes_error_is_its_nodes_answer(pool):
    a, b, c = pool.endpoints

    def work(node, item):
        if node == b:
            raise AgentError(f"{node}: down")
        return pool.client(node).call("agent.ping")["time"] > 0 and item

    answers = pool.on_nodes(work, {a: 1, b: 2, c: 3})
    assert answers[a] == 1 and answers[c] == 3
    assert isinstance(answers[b], AgentError) and str(answers[b]) == f"{b}: down"


def test_clock_offsets_are_measured_once(pool):
    a = next(iter(pool.endpoints))
    offset = pool.clock_offset(a)
    assert offset == 0.0  # one machine, one clock: within the measurement's own uncertainty
    pool.client(a).close()
    pool.failed[a] = f"{a}: gone"  # a second measurement would now fail; the first one's answer stands
    assert pool.clock_offset(a) == offset


def test_a_thread_that_ends_closes_its_own_connections_and_no_other(pool):
    # The rounds' pipeline runs in a thread per stretch of rounds; its connections must end with it.
    names = list(pool.endpoints)
    mine = {name: pool.client(name) for name in names}
    for client in mine.values():
        client.call("agent.ping")
    seen = {}

    def stretch():
        seen.update({name: pool.client(name) for name in names})
        for client in seen.values():
            client.call("agent.ping")
        assert all(client._sock is not None for client in seen.values())
        pool.close_thread()

    thread = threading.Thread(target=stretch)
    thread.start()
    thread.join(30)
    assert all(client._sock is None for client in seen.values())      # closed, and out of the pool
    assert not any(client is other for client in seen.values() for other in pool._all)
    assert all(client._sock is not None for client in mine.values())  # this thread's are untouched
    assert [client.call("agent.ping")["time"] > 0 for client in mine.values()] == [True] * len(names)
