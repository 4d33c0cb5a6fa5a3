"""rounds from the controller: each round's pairs measured at once by one process, with or without xdist, every
pair still its own test (selection, verdict, --lf), on a real 6-host netns testbed."""

import datetime
from pathlib import Path

from support.meshcheck import iter_entries, node_overlaps, validate_mesh_file
from support.testbed_fixtures import make_testbed_fixture, needs_netns

pytestmark = needs_netns

testbed = make_testbed_fixture(nodes=6)

# node2->node3 alone asks for a rate no link has: in its round it is measured with the others, judged on its own.
SUITE = """
import pytest

@pytest.mark.meshperf(duration=1)
def test_tcp(mesh_pair, measure):
    if (mesh_pair.src.name, mesh_pair.dst.name) == ("node2", "node3"):
        measure(thresholds=["throughput>=1000Tbit/s"])
    else:
        measure()
"""
ROUND_PAIRS = 6   # netns:6: 5 rounds of 6 disjoint pairs


def run(pytester, tb, out, *args):
    pytester.makepyfile(test_mesh=SUITE)
    # (Without diagnosis, as every inner run of these tests: tests/conftest.py.)
    return pytester.runpytest_subprocess("--cluster", tb.hosts_yaml, "--ssh-known-hosts", tb.known_hosts,
                                         "--mesh-out", str(out), *args)


def measured(out):
    doc = validate_mesh_file(str(Path(out) / "latest" / "mesh.json"))
    return doc, {(src, dst): entry for src, dst, _, entry in iter_entries(doc)}


def spans_by_round(entries):
    spans = {}
    for entry in entries.values():
        instance = entry["instances"][0]
        spans.setdefault(entry["round"], []).append((instance["start"], instance["end"]))
    return spans


def assert_rounds_ran_together(doc, entries):
    assert node_overlaps(doc) == []   # no node sent or received twice at once
    for number, spans in spans_by_round(entries).items():
        # every flow of the round started before any of them ended: they ran together
        assert max(start for start, _ in spans) < min(end for _, end in spans), (number, spans)
    assert {entry["group"]["schedule"] for entry in entries.values()} == {"rounds"}


def when(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()


def in_round(entries, number):
    return [entry for entry in entries.values() if entry["round"] == number]


def pipelined_rounds(entries):
    return {entry["round"]: entry["group"].get("pipelined", False) for entry in entries.values()}


def statuses(entries):
    return {pair: entry["status"] for pair, entry in entries.items()}


def test_each_round_runs_together_without_xdist_and_with(pytester, tmp_path, testbed):
    result = run(pytester, testbed, tmp_path / "rounds", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=29, failed=1)   # node2->node3
    doc, rounds = measured(tmp_path / "rounds")
    assert sorted(len(spans) for spans in spans_by_round(rounds).values()) == [ROUND_PAIRS] * 5
    assert_rounds_ran_together(doc, rounds)
    # pipelined: each round after the first was set up (leases, servers) while the one before it measured
    assert pipelined_rounds(rounds) == {1: False, 2: True, 3: True, 4: True, 5: True}
    # every round's clients were held, then released (round 1 too): a late release starts at once, where a late
    # timed start would be refused
    assert all("hold" in entry["group"]["phases_s"] for entry in rounds.values())
    for number in range(2, 6):
        assert min(when(e["started"]) for e in in_round(rounds, number)) < \
            max(when(e["instances"][0]["end"]) for e in in_round(rounds, number - 1))
    # the per-pair threshold judged its pair only, though all six of its round ran as one group
    assert [pair for pair, status in statuses(rounds).items() if status != "passed"] == [("node2", "node3")]
    result.stdout.fnmatch_lines(["*node2->node3*throughput*< 1000 Tbit/s*"])

    sequential = run(pytester, testbed, tmp_path / "sequential", "-p", "no:cacheprovider",
                     "--mesh-schedule", "sequential")
    sequential.assert_outcomes(passed=29, failed=1)
    _, reference = measured(tmp_path / "sequential")
    assert statuses(reference) == statuses(rounds)   # the same pairs, judged the same (issue 12's acceptance)
    assert {entry["group"] is None for entry in reference.values()} == {True}

    xdist = run(pytester, testbed, tmp_path / "xdist", "-p", "no:cacheprovider", "-n", "2")
    xdist.assert_outcomes(passed=29, failed=1)
    doc, parallel = measured(tmp_path / "xdist")
    assert statuses(parallel) == statuses(rounds)
    assert all("hold" in entry["group"]["phases_s"] for entry in parallel.values())
    assert_rounds_ran_together(doc, parallel)


def test_selecting_part_of_the_rounds_measures_exactly_the_selection(pytester, tmp_path, testbed):
    # -k node1: node1's ten pairs, two in each round: each round measures its two, and nothing else
    result = run(pytester, testbed, tmp_path / "k", "-p", "no:cacheprovider", "-k", "node1")
    result.assert_outcomes(passed=10)
    doc, entries = measured(tmp_path / "k")
    assert set(entries) == {(a, b) for a in [f"node{i}" for i in range(1, 7)] for b in [f"node{i}" for i in range(1, 7)]
                            if a != b and "node1" in (a, b)}
    assert sorted(len(spans) for spans in spans_by_round(entries).values()) == [2] * 5
    assert_rounds_ran_together(doc, entries)
    # --mesh-links, two pairs of one round
    result = run(pytester, testbed, tmp_path / "links", "-p", "no:cacheprovider",
                 "--mesh-links", "node3->node4", "--mesh-links", "node4->node5")
    result.assert_outcomes(passed=2)
    doc, entries = measured(tmp_path / "links")
    assert set(entries) == {("node3", "node4"), ("node4", "node5")}
    assert_rounds_ran_together(doc, entries)


def test_last_failed_measures_exactly_the_failed_pair(pytester, tmp_path, testbed):
    run(pytester, testbed, tmp_path / "first").assert_outcomes(passed=29, failed=1)   # the pair
    again = run(pytester, testbed, tmp_path / "again", "--lf")
    again.assert_outcomes(failed=1)   # and nothing else ran
    _, entries = measured(tmp_path / "again")
    assert set(entries) == {("node2", "node3")} and entries[("node2", "node3")]["status"] == "failed"


# The first pair test of round 1 holds pytest until round 4 has been measured and written (its group file):
# pytest is then still in round 1, so the pipeline must not start round 5 ahead of it (three rounds ahead at most).
HELD = """
import glob, json, os, time
import pytest

held = []

@pytest.mark.meshperf(duration=1)
def test_tcp(mesh_pair, measure):
    measure()
    if mesh_pair.round == 1 and not held:
        held.append(mesh_pair.id)
        deadline = time.monotonic() + 120
        # (the run's directory appears twice: itself and "latest")
        while len({{os.path.realpath(p) for p in glob.glob({groups!r})}}) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        with open({released!r}, "w") as handle:
            json.dump(time.time(), handle)
"""


def test_the_pipeline_never_runs_more_than_three_rounds_ahead_of_pytest(pytester, tmp_path, testbed):
    out, released = tmp_path / "held", tmp_path / "released.json"
    pytester.makepyfile(test_mesh=HELD.format(groups=str(out / "*" / "groups" / "*.json"), released=str(released)))
    result = pytester.runpytest_subprocess("--cluster", testbed.hosts_yaml, "--ssh-known-hosts", testbed.known_hosts,
                                           "--mesh-out", str(out), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=30)
    doc, entries = measured(out)
    assert_rounds_ran_together(doc, entries)
    # round 5 was prepared during round 4 and then called off: it ran later, from a pipeline of its own
    assert pipelined_rounds(entries) == {1: False, 2: True, 3: True, 4: True, 5: False}
    assert min(when(e["instances"][0]["start"]) for e in in_round(entries, 5)) > float(released.read_text())
