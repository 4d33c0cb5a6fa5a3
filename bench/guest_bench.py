#!/usr/bin/env python3
"""meshperf as a guest in a repository of other tests: what it costs a run with no mesh test in it.

A benchmark, not a test: it prints figures and exits 0.  In a temporary
repository of trivial tests it times, with meshperf installed and with
``-p no:meshperf``:

* ``pytest -n 2`` over N trivial tests (default 6,000; issue 11's target: a ratio of 1.1 or less);
* pytest start-up: ``pytest -q`` over one trivial test, repeated (target: 30 ms or less added);
* a mixed run's scheduling: N trivial tests beside one mesh test file on ``local:2`` under ``-n 2``
  (``--mixed``; it measures real iperf3 for 2 s, so it is off by default).

Each figure is the median of ``--repeat`` runs (min and max beside it).  Run it
with the interpreter of the environment meshperf is installed in:

    .venv/bin/python bench/guest_bench.py
    .venv/bin/python bench/guest_bench.py --tests 3000,6000 --repeat 5 --mixed
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from machine import machine   # bench/machine.py

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
        raise SystemExit("bench: %s exited %d: %s" % (" ".join(argv), done.returncode, " | ".join(tail)))
    return elapsed


def figure(samples):
    return "median %7.3f s  (min %.3f, max %.3f, %d runs)" % (statistics.median(samples), min(samples),
                                                                max(samples), len(samples))


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
    print("%s\n  with meshperf      %s\n  -p no:meshperf     %s\n  ratio %.3f, added %+.0f ms"
          % (label, figure(with_it), figure(without), ratio, added_ms))
    return ratio, added_ms


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", default="6000", help="comma-separated test counts for -n 2 (default 6000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (default 3; start-up: 5x that)")
    parser.add_argument("--mixed", action="store_true", help="also a mixed run with one mesh test file")
    args = parser.parse_args(argv)
    print("machine: %(nproc)s CPUs (%(cpu)s), Linux %(kernel)s, Python %(python)s, meshperf %(meshperf)s at %(code)s"
          % machine())
    print("load average at the start: %.2f %.2f %.2f" % os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="meshperf-guest-") as repo:
        with open(os.path.join(repo, "pytest.ini"), "w") as handle:
            handle.write("[pytest]\n")
        with open(os.path.join(repo, "test_one.py"), "w") as handle:
            handle.write(ONE)
        compare("pytest start-up (one trivial test, no xdist):", args.repeat * 5, repo, ["test_one.py"])
        for count in (int(n) for n in args.tests.split(",")):
            with open(os.path.join(repo, "test_many.py"), "w") as handle:
                handle.write(TRIVIAL.format(count=count))
            compare("%d trivial tests, -n 2:" % count, args.repeat, repo, ["-n", "2", "test_many.py"])
            if args.mixed:
                with open(os.path.join(repo, "test_mesh.py"), "w") as handle:
                    handle.write(MESH)
                samples = [timed(pytest_argv("-n", "2", "--cluster", "local:2", "--mesh-report=no",
                                             "test_many.py", "test_mesh.py"), repo) for _ in range(args.repeat)]
                print("%d trivial tests + 2 mesh pairs (1 s each) on local:2, -n 2:\n  %s" % (count, figure(samples)))
                os.unlink(os.path.join(repo, "test_mesh.py"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
