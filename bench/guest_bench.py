#!/usr/bin/env python3
"""meshperf as a guest in a repository of other tests: what it costs a run with no mesh test in it.

A benchmark, not a test: it prints figures and exits 0.  In a temporary
repository of trivial tests it times, with meshperf installed and with
``-p no:meshperf``:

* ``pytest -n 2`` over N trivial tests (default 6,000; issue 11's target: a ratio of 1.1 or less);
* pytest start-up: ``pytest -q`` over one trivial test, repeated (target: 30 ms or less added);
* a mixed run's scheduling: N trivial tests beside one mesh test file on ``local:2`` under ``-n 2``
  (``--mixed``; it measures real iperf3 for 2 s, so it is off by default);
* ``--scheduler 10000,40000``: meshperf's scheduler alone, fed simulated workers, half the tests pair
  tests: the time per test stays flat when the scheduling is linear.

Each figure is the median of ``--repeat`` runs (min and max beside it).  Run it
with the interpreter of the environment meshperf is installed in:

    .venv/bin/python bench/guest_bench.py
    .venv/bin/python bench/guest_bench.py --tests 3000,6000 --repeat 5 --mixed
"""

import argparse
import collections
import os
import statistics
import subprocess
import sys
import tempfile
import time

from machine import load_average, machine, machine_line  # bench/machine.py

TRIVIAL = "import pytest\n\n@pytest.mark.parametrize('i', range({count}))\ndef test_trivial(i):\n    assert i >= 0\n"
ONE = "def test_one():\n    assert True\n"
MESH = ("import pytest\n\n@pytest.mark.meshperf(duration=1)\ndef test_tcp(mesh_pair, measure):\n"
        "    measure()\n")


def timed(argv, cwd):
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 5):
        tail = done.stdout.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise SystemExit(f"bench: {' '.join(argv)} exited {done.returncode}: {' | '.join(tail)}")
    return elapsed


def figure(samples):
    return (f"median {statistics.median(samples):7.3f} s  (min {min(samples):.3f}, max {max(samples):.3f}, "
            f"{len(samples)} runs)")


def pytest_argv(*args):
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]


def compare(label, repeat, cwd, args):
    """Interleaved runs with and without meshperf, so drift in the machine's load hits both alike."""
    with_it, without = [], []
    for _ in range(repeat):
        with_it.append(timed(pytest_argv(*args), cwd))
        without.append(timed(pytest_argv("-p", "no:meshperf", *args), cwd))
    ratio = statistics.median(with_it) / statistics.median(without)
    added_ms = (statistics.median(with_it) - statistics.median(without)) * 1000
    print(f"{label}\n  with meshperf      {figure(with_it)}\n  -p no:meshperf     {figure(without)}\n  ratio "
          f"{ratio:.3f}, added {added_ms:+.0f} ms")
    return ratio, added_ms


class _Config:
    """What xdist's LoadScheduling reads of a pytest config."""

    def __init__(self, workers):
        self.workers = workers

    def getvalue(self, name):
        return [f"{self.workers}*popen"] if name == "tx" else None

    def getoption(self, name):
        return None


class _QuietLog:
    """xdist's log producer, silent (xdist's own prints a line per scheduling step when given none)."""

    def loadsched(self, *args):
        pass


class _Worker:
    """A worker that takes tests as they are sent and finishes the oldest when asked."""

    def __init__(self, name):
        self.gateway = type("Gateway", (), {"id": name})()
        self.shutting_down = False
        self.queue = collections.deque()

    def send_runtest_some(self, indices):
        self.queue.extend(indices)

    def shutdown(self):
        self.shutting_down = True


def _drive(count, items, workers):
    """Seconds for the scheduler to hand out and see completed ``count`` tests (half pair tests)."""
    from pytest_meshperf.session.scheduling import make_scheduler
    collection = [f"t.py::test_plain[{i}]" if i % 2 else f"t.py::test_tcp[{i}]" for i in range(count)]
    sched = make_scheduler(_Config(workers), _QuietLog(), lambda: items(collection))
    nodes = [_Worker(f"gw{i}") for i in range(workers)]
    for node in nodes:
        sched.add_node(node)
    started = time.perf_counter()
    for node in nodes:
        sched.add_node_collection(node, collection)
    sched.schedule()
    done = 0
    while done < count:
        busy = [node for node in nodes if node.queue]
        if not busy:
            break
        for node in busy:
            sched.mark_test_complete(node, node.queue.popleft())
            done += 1
    assert done == count, f"only {done} of {count} tests were handed out"
    return time.perf_counter() - started


def scheduler_scaling(counts, workers=2, sources=32):
    """The real scheduler (scheduling.py) fed simulated workers, half the tests pair tests of ``sources``
    nodes, against xdist's own LoadScheduling on the same collection (what a run without mesh tests gets)."""
    from pytest_meshperf.session.mesh_items import MeshItems

    def mesh(collection):
        return MeshItems({nodeid: f"node{i % sources}" for i, nodeid in enumerate(collection) if i % 2 == 0})

    print(f"scheduler alone (simulated {workers} workers; half the tests pair tests from {sources} source nodes), "
          "per test handed out and completed:")
    for count in counts:
        ours, xdist = _drive(count, mesh, workers), _drive(count, lambda c: MeshItems(), workers)
        print(f"  {count:7d} tests: meshperf {ours:.3f} s ({ours / count * 1e6:.1f} us per test), xdist's "
              f"LoadScheduling {xdist:.3f} s ({xdist / count * 1e6:.1f} us)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", default="6000", help="comma-separated test counts for -n 2 (default 6000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (default 3; start-up: 5x that)")
    parser.add_argument("--mixed", action="store_true", help="also a mixed run with one mesh test file")
    parser.add_argument("--scheduler", default="", metavar="COUNTS",
                        help="only the scheduler, with simulated workers, for these test counts (e.g. 10000,40000)")
    args = parser.parse_args(argv)
    if args.scheduler:
        scheduler_scaling([int(n) for n in args.scheduler.split(",")])
        return 0
    print(machine_line(machine()))
    print(load_average("at the start"))
    with tempfile.TemporaryDirectory(prefix="meshperf-guest-") as repo:
        with open(os.path.join(repo, "pytest.ini"), "w") as handle:
            handle.write("[pytest]\n")
        with open(os.path.join(repo, "test_one.py"), "w") as handle:
            handle.write(ONE)
        compare("pytest start-up (one trivial test, no xdist):", args.repeat * 5, repo, ["test_one.py"])
        for count in (int(n) for n in args.tests.split(",")):
            with open(os.path.join(repo, "test_many.py"), "w") as handle:
                handle.write(TRIVIAL.format(count=count))
            compare(f"{count} trivial tests, -n 2:", args.repeat, repo, ["-n", "2", "test_many.py"])
            if args.mixed:
                with open(os.path.join(repo, "test_mesh.py"), "w") as handle:
                    handle.write(MESH)
                samples = [timed(pytest_argv("-n", "2", "--cluster", "local:2", "--mesh-report=no",
                                             "test_many.py", "test_mesh.py"), repo) for _ in range(args.repeat)]
                print(f"{count} trivial tests + 2 mesh pairs (1 s each) on local:2, -n 2:\n  {figure(samples)}")
                os.unlink(os.path.join(repo, "test_mesh.py"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
