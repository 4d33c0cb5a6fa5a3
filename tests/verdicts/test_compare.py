"""Comparing runs: ``meshperf compare``, ``compare_results`` and the pytest baseline gate (``--mesh-baseline``).

The acceptance test makes its baseline with a real run on a shaped netns testbed, then slows one link.  The
CLI and ``compare_results`` tests read two real mesh.json files recorded on the netns testbed
(tests/data/compare/, how they were made is in tests/data/README.md).
"""

import json
import shutil
from pathlib import Path

import pytest

from pytest_meshperf.errors import UsageError
from pytest_meshperf.verdicts.compare import (
    ERROR_IN_NEW,
    MISSING_IN_NEW,
    MISSING_IN_OLD,
    OK,
    REGRESSED,
    compare_results,
    metric_change,
    parse_tolerance,
)

from support.commands import meshperf
from support.meshcheck import validate_mesh_file
from support.paths import BASELINE, SLOW_LINK
from support.paths import DATA as TEST_DATA
from support.usage import assert_usage_error

DATA = TEST_DATA / "compare"

TCP_TEST = """
import pytest

@pytest.mark.meshperf(duration=2)
def test_tcp(mesh_pair, measure):
    measure()
"""


@pytest.mark.alone
@pytest.mark.usefixtures("netns_required")
@pytest.mark.plugin_defaults
def test_one_slower_link_fails_exactly_its_test_against_a_real_baseline(pytester, tmp_path):
    # Every link is shaped to 200 Mbit/s in both runs so the figures are stable on a loaded machine; in
    # the second run node1->node2 gets 100 Mbit/s.  The baseline is given as a separate word, a path
    # outside the test directory: that moves pytest's rootdir, and the entries must still be found.
    pytester.makepyfile(test_mesh=TCP_TEST)
    old, new = tmp_path / "old", tmp_path / "new"
    first = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cluster", "netns:3,rate=200mbit",
                                          "--mesh-out", str(old))
    first.assert_outcomes(passed=6)
    second = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--cluster", "netns:3,rate=200mbit,rate.node1->node2=100mbit",
        "--mesh-out", str(new), "--mesh-baseline", str(old / "latest"), "--mesh-max-regression", "10%",
        "--junitxml", str(tmp_path / "mesh.xml"))
    second.assert_outcomes(passed=5, failed=2)   # the pair, and the diagnosis: link node1->node2
    text = second.stdout.str()
    failed = [line for line in text.splitlines() if line.startswith("FAILED ")]
    assert len(failed) == 2 and "test_tcp[node1->node2]" in failed[0], text
    assert "test_tcp::diagnosis[link node1->node2]" in failed[1], text   # the regression, named as that link's
    message = next(line for line in text.splitlines() if line.startswith("node1->node2: throughput "))
    assert "below the baseline's" in message and "(--mesh-max-regression 10%, baseline " in message, message
    assert "not in the baseline" not in text

    mesh = validate_mesh_file(str(new / "latest" / "mesh.json"))
    baseline_mesh = str((old / "latest" / "mesh.json").resolve())
    assert mesh["run"]["parameters"]["baseline"] == {"path": baseline_mesh, "max_regression": 0.1,
                                                    "metrics": None}
    for src, source in mesh["sources"].items():
        for dst, destination in source["destinations"].items():
            (entry,) = destination["tests"].values()
            verdict = entry["baseline"]["metrics"]["throughput_bps"]
            assert entry["baseline"]["found"] is True
            assert verdict["passed"] is ((src, dst) != ("node1", "node2")), (src, dst, verdict)
            assert entry["status"] == ("failed" if (src, dst) == ("node1", "node2") else "passed")
    slow = mesh["sources"]["node1"]["destinations"]["node2"]["tests"]
    (slow_entry,) = slow.values()
    baseline = slow_entry["baseline"]["metrics"]["throughput_bps"]
    print(f"node1->node2: {slow_entry['metrics']['throughput_bps'] / 1e6:.1f} Mbit/s, baseline "
          f"{baseline['baseline'] / 1e6:.1f} Mbit/s, worse by {100 * baseline['worse_by']:.0f}%")
    assert 0.35 < slow_entry["baseline"]["metrics"]["throughput_bps"]["worse_by"] < 0.65
    assert 'name="meshperf_baseline" value="found"' in (tmp_path / "mesh.xml").read_text()
    assert slow_entry["baseline"]["metrics"]["throughput_bps"]["message"] == message[len("node1->node2: "):]
    # meshperf summary lists the baseline failure as it lists a threshold's.
    summary = meshperf("summary", new / "latest")
    assert summary.returncode == 1
    assert f"FAILED node1->node2: {message[len('node1->node2: '):]}" in summary.stdout, summary.stdout

    # meshperf compare on the same two runs agrees, and fails CI.
    result = meshperf("compare", old / "latest", new / "latest", "--max-regression", "10%")
    assert result.returncode == 1, result.stdout + result.stderr
    regressed = [line for line in result.stdout.splitlines() if line.startswith("regressed ")]
    assert len(regressed) == 1 and "node1->node2" in regressed[0], result.stdout


def test_compare_cli_lists_every_link_worst_first_and_fails_on_the_regression():
    result = meshperf("compare", BASELINE, SLOW_LINK)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    table = lines[lines.index("") + 1:]
    assert table[0].split() == ["status", "link", "test", "metric", "old", "new", "change"]
    statuses = [row.split("  ")[0].strip() for row in table[1:7]]
    assert statuses == ["regressed", "error in new", "missing in new", "ok", "ok", "ok"]
    assert "node1->node2" in table[1] and "-49.4%" in table[1] and "97.53 Mbit/s" in table[1]
    assert "unable to set TCP_CONGESTION" in table[2]
    assert "6 compared: 1 regressed, 1 error in new, 1 missing in new, 0 ok" not in result.stdout
    assert "6 compared: 1 regressed, 1 error in new, 1 missing in new, 3 ok" in result.stdout
    assert "FAILED: 2 links regressed or now error: node1->node2 test_tcp, node2->node3 test_tcp" in result.stdout


def test_compare_cli_passes_when_nothing_got_worse_and_takes_run_directories(tmp_path):
    run = tmp_path / "results" / "20261122T091615Z-cdbf"
    run.mkdir(parents=True)
    shutil.copy(BASELINE, run / "mesh.json")
    (tmp_path / "results" / "latest").symlink_to(run.name)
    # The slow link run as the old one: the link got faster (improved), the errored pair works again.
    result = meshperf("compare", SLOW_LINK, tmp_path / "results", "--max-regression", "10%",
                      "--metric", "throughput,retransmits")
    assert result.returncode == 0, result.stdout + result.stderr
    improved = [line for line in result.stdout.splitlines() if line.startswith("improved ")]
    assert len(improved) == 1 and "node1->node2" in improved[0], result.stdout
    assert "error in old" in result.stdout and "missing in old" in result.stdout
    assert "retransmits" in result.stdout and "FAILED" not in result.stdout


@pytest.mark.parametrize("args, fragment", [
    (["nowhere.json", SLOW_LINK], "OLD nowhere.json: no mesh.json there; give a mesh.json, a run directory"),
    ([BASELINE, DATA / "README.missing"], f"NEW {DATA / 'README.missing'}: no mesh.json there"),
    ([BASELINE, SLOW_LINK, "--max-regression", "10"], "--max-regression '10': give the tolerance as a percentage"),
    ([BASELINE, SLOW_LINK, "--max-regression=-5%"], "--max-regression '-5%'"),
    ([BASELINE, SLOW_LINK, "--metric", "thruput"], "--metric 'thruput': unknown metric 'thruput'; did you mean"),
    ([Path(__file__), SLOW_LINK], "not a meshperf mesh.json"),   # a file that is not JSON: this one
])
def test_compare_cli_bad_input_is_one_line(args, fragment):
    result = meshperf("compare", *args)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and fragment in result.stderr, result.stderr


def test_compare_results_is_typed_for_renderers():
    comparison = compare_results(str(BASELINE), str(SLOW_LINK), tolerance=0.1)
    by_link = {(c.src, c.dst): c for c in comparison.changes}
    assert {link: c.status for link, c in by_link.items()} == {
        ("node1", "node2"): REGRESSED, ("node2", "node3"): ERROR_IN_NEW, ("node3", "node1"): MISSING_IN_NEW,
        ("node2", "node1"): OK, ("node3", "node2"): OK, ("node1", "node3"): OK}
    slow = by_link[("node1", "node2")]
    assert slow.test == "test_link.py::test_tcp" and slow.metric == "throughput_bps"
    assert slow.new < slow.old and slow.worse_by == pytest.approx(-slow.change) and slow.worse_by > 0.4
    assert by_link[("node2", "node3")].new_error.startswith("iperf3: unable to set TCP_CONGESTION")
    assert comparison.failed and comparison.counts[REGRESSED] == 1
    assert comparison.changes[0] is slow   # worst first
    reverse = compare_results(str(SLOW_LINK), str(BASELINE), tolerance=0.1)
    assert not reverse.failed and {c.status for c in reverse.changes} >= {MISSING_IN_OLD}


@pytest.mark.parametrize("metric, old, new, change, worse_by", [
    ("throughput_bps", 200e6, 100e6, -0.5, 0.5),             # lower throughput is worse
    ("latency_p99_us", 200.0, 300.0, 0.5, 0.5),              # higher latency is worse
    ("latency_p99_us", 200.0, 100.0, -0.5, -0.5),
    ("retransmits", 0.0, 3.0, 0.03, 0.03),                   # a tiny baseline: 3 of a floor of 100, not +inf
    ("lost_percent", 0.0, 0.2, 0.2, 0.2),                    # 0.2 of one percentage point
    ("lost_percent", 0.0, 0.0, 0.0, 0.0),
    ("jitter_ms", 0.01, 0.05, 0.4, 0.4),                     # floor 0.1 ms
])
def test_metric_change_is_direction_aware_and_floored(metric, old, new, change, worse_by):
    assert metric_change(metric, old, new) == (pytest.approx(change), pytest.approx(worse_by))


def test_tolerance_is_a_percentage():
    assert parse_tolerance("10%", "--x") == pytest.approx(0.1)
    assert parse_tolerance(" 2.5 % ", "--x") == pytest.approx(0.025)
    for bad in ("10", "ten%", "-1%", ""):
        with pytest.raises(UsageError, match="give the tolerance as a percentage"):
            parse_tolerance(bad, "--x")


@pytest.mark.parametrize("args, fragments", [
    (["--mesh-baseline", "nowhere"], ["--mesh-baseline", "nowhere: no mesh.json there"]),
    (["--mesh-baseline", str(BASELINE), "--mesh-max-regression", "10"],
     ["--mesh-max-regression '10'", "percentage, e.g. 10%"]),
    (["--mesh-max-regression", "10%"], ["--mesh-max-regression", "need --mesh-baseline"]),
    (["--mesh-baseline", str(BASELINE), "--mesh-regression-metric", "thruput"],
     ["--mesh-regression-metric 'thruput'", "did you mean 'throughput'"]),
])
def test_bad_baseline_options_are_usage_errors(pytester, args, fragments):
    pytester.makepyfile(TCP_TEST)
    assert_usage_error(pytester.runpytest_subprocess("-p", "no:cacheprovider", *args), *fragments)


def test_pairs_missing_from_the_baseline_are_recorded_not_failed(pytester, mesh_out):
    # A real local:2 baseline of another test: none of this test's pairs are in it.
    pytester.makepyfile(test_other=TCP_TEST.replace("duration=2", "duration=1").replace("test_tcp", "test_other"))
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cluster", "local:2", "--mesh-out",
                                  str(mesh_out / "old")).assert_outcomes(passed=2)
    pytester.makepyfile(test_new=TCP_TEST.replace("duration=2", "duration=1"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cluster", "local:2", "test_new.py",
                                           "--mesh-out", str(mesh_out / "new"),
                                           f"--mesh-baseline={mesh_out / 'old'}")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["not in the baseline * (recorded, not judged): "
                                 "test_new.py::test_tcp[[]node1->node2[]], test_new.py::test_tcp[[]node2->node1[]]"])
    mesh = json.loads((mesh_out / "new" / "latest" / "mesh.json").read_text())
    entry = mesh["sources"]["node1"]["destinations"]["node2"]["tests"]["test_new.py::test_tcp"]
    assert entry["baseline"] == {"found": False, "status": None, "metrics": {}}
