"""The core plugin end to end: real pytest runs of mesh tests on the embedded cluster."""

import json
import signal
import xml.etree.ElementTree as ET

import pytest

from support.meshcheck import iter_entries as entries
from support.meshcheck import validate_mesh_file
from support.procs import alive, descendants, find_iperf3, inner_pytest, is_agent, is_iperf3, journal_records, wait_for

TCP_TEST = """
import pytest

@pytest.mark.meshperf(duration={duration})
def test_tcp(mesh_pair, measure):
    m = measure()
    assert m.throughput_bps > 0
"""


def load_mesh(out):
    path = out / "latest" / "mesh.json"
    validate_mesh_file(str(path))
    return json.loads(path.read_text())


def test_full_mesh_on_embedded_cluster(pytester, mesh_out):
    pytester.makepyfile(test_mesh=TCP_TEST.format(duration=1))
    result = pytester.runpytest_subprocess("--mesh-out", str(mesh_out), "-v")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*meshperf mesh (rows: source, columns: destination)*",
                                 "*node1*node2*node3*", "*6 measurements: 6 passed, 0 failed*",
                                 "results: *mesh.json*"])
    mesh = load_mesh(mesh_out)
    assert mesh["run"]["interrupted"] is False
    assert list(mesh["cluster"]["nodes"]) == ["node1", "node2", "node3"]
    got = {(src, dst) for src, dst, _, _ in entries(mesh)}
    assert got == {(a, b) for a in ("node1", "node2", "node3") for b in ("node1", "node2", "node3") if a != b}
    for src, dst, key, entry in entries(mesh):
        assert key == "test_mesh.py::test_tcp"
        assert entry["status"] == "passed"
        assert entry["metrics"]["throughput_bps"] > 0
        (instance,) = entry["instances"]
        assert instance["raw"]["end"]["sum_received"]["bits_per_second"] == entry["metrics"]["throughput_bps"]
        assert instance["raw"]["start"]["version"].startswith("iperf 3")
        assert f"-c 127.0.0.1{dst[-1]}" in instance["command"]
    assert mesh["cluster"]["nodes"]["node1"]["tools"]["iperf3"]["version"].startswith("3.")


def test_mesh_links_measures_only_the_links_named(pytester, mesh_out):
    """pytest's -k cannot say 'node1->'; --mesh-links can, with globs on each side."""
    pytester.makepyfile(test_mesh=TCP_TEST.format(duration=1))
    result = pytester.runpytest_subprocess("--mesh-out", str(mesh_out), "-v", "--mesh-links", "node1->*",
                                           "--mesh-links", "*->node1,node3->node2")
    result.assert_outcomes(passed=5, deselected=1)
    got = {(src, dst) for src, dst, _, _ in entries(load_mesh(mesh_out))}
    assert got == {("node1", "node2"), ("node1", "node3"), ("node2", "node1"), ("node3", "node1"),
                   ("node3", "node2")}


def test_threshold_failure_is_readable_and_recorded(pytester, mesh_out):
    pytester.makepyfile(test_mesh=TCP_TEST.format(duration=1))
    result = pytester.runpytest_subprocess("--mesh-out", str(mesh_out), "--cluster", "local:2",
                                           "--mesh-threshold", "throughput>=100Tbit/s")
    assert result.ret == 1
    result.assert_outcomes(failed=2)
    result.stdout.re_match_lines([r".*node1->node2: throughput [0-9.]+ Gbit/s < 100 Tbit/s \(--mesh-threshold\)",
                                  r".*node2->node1: throughput [0-9.]+ Gbit/s < 100 Tbit/s \(--mesh-threshold\)"])
    assert "Traceback" not in result.stdout.str()
    mesh = load_mesh(mesh_out)
    found = list(entries(mesh))
    assert len(found) == 2
    for _, _, _, entry in found:
        assert entry["status"] == "failed"
        (threshold,) = entry["thresholds"]
        assert threshold["passed"] is False and threshold["origin"] == "--mesh-threshold"
        assert threshold["expression"] == "throughput>=100Tbit/s"
        assert entry["instances"][0]["raw"]["end"]


def test_junit_has_one_testcase_per_pair_with_metric_properties(pytester, mesh_out):
    pytester.makepyfile(test_mesh=TCP_TEST.format(duration=1))
    xml_path = pytester.path / "mesh.xml"
    result = pytester.runpytest_subprocess("--mesh-out", str(mesh_out), "--junitxml", str(xml_path),
                                           "-o", "junit_family=xunit1")
    result.assert_outcomes(passed=6)
    cases = ET.parse(xml_path).getroot().iter("testcase")
    by_name = {case.get("name"): case for case in cases}
    assert sorted(by_name) == sorted(f"test_tcp[{a}->{b}]" for a in ("node1", "node2", "node3")
                                     for b in ("node1", "node2", "node3") if a != b)
    for case in by_name.values():
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert float(props["throughput_bps"]) > 0
        assert "retransmits" in props and props["meshperf_status"] == "passed"


def _inner_run(pytester, mesh_out, duration, cluster="local:2", *extra):
    pytester.makepyfile(test_mesh=TCP_TEST.format(duration=duration))
    xml_path = pytester.path / "mesh.xml"
    return inner_pytest(pytester, "--cluster", cluster, "--mesh-out", mesh_out, "--junitxml", xml_path,
                        *extra), xml_path


def _junit_outcomes(xml_path):
    outcomes = {}
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[case.get("name")] = (kinds[0] if kinds else "passed",
                                      " ".join(child.get("message", "") for child in case))
    return outcomes


@pytest.mark.parametrize("role_flag, bind, expected", [
    ("-c", "127.0.0.11", "killed by signal 9"),   # node1->node2's client binds node1's address
    ("-s", "127.0.0.12", "iperf3"),               # and its server node2's
])
def test_killed_tool_process_makes_that_pair_an_error(pytester, mesh_out, role_flag, bind, expected):
    run, xml_path = _inner_run(pytester, mesh_out, duration=4)
    with run as proc:
        # Both pairs of local:2 are one round, measured together.  Once node1->node2's client runs, its server
        # is serving it (a server killed before it is ready is not this case: the agent retries it on another
        # port and the pair is measured).
        wait_for(lambda: find_iperf3(proc.pid, "-c", "127.0.0.11"), 60, what="node1->node2's iperf3 client")
        victim = find_iperf3(proc.pid, role_flag, bind)
        assert journal_records(mesh_out) == [] and victim.is_running()
        seen = [p for p in descendants(proc.pid) if is_iperf3(p) or is_agent(p)]
        victim.send_signal(signal.SIGKILL)
        proc.wait(120)
    assert proc.returncode == 1, proc.stdout.read()
    outcomes = _junit_outcomes(xml_path)
    assert outcomes["test_tcp[node1->node2]"][0] == "error"
    assert expected in outcomes["test_tcp[node1->node2]"][1]
    assert outcomes["test_tcp[node2->node1]"][0] == "passed"
    mesh = load_mesh(mesh_out)
    statuses = {(src, dst): entry["status"] for src, dst, _, entry in entries(mesh)}
    assert statuses == {("node1", "node2"): "error", ("node2", "node1"): "passed"}
    error = mesh["sources"]["node1"]["destinations"]["node2"]["tests"]["test_mesh.py::test_tcp"]["error"]
    assert expected in error
    assert alive(seen) == [], f"left behind: {alive(seen)}"


def test_sigint_leaves_valid_result_and_no_processes(pytester, mesh_out):
    # local:3 is two rounds of three pairs.  Ctrl-C comes while round 2's clients run, once round 1 is journaled
    # (0.35 s into round 2).  (This test once saw exit status 0: its run had SIGINT ignored, inherited from CI
    # started as a background job; inner_pytest now gives it the default, as a terminal does.)
    run, _ = _inner_run(pytester, mesh_out, 3, "local:3", "--mesh-export", "export.json")
    with run as proc:
        wait_for(lambda: len(journal_records(mesh_out)) >= 2 and find_iperf3(proc.pid, "-c"), 90,
                 what="two finished measurements and the next round's clients running")
        seen = [p for p in descendants(proc.pid) if is_iperf3(p) or is_agent(p)]
        assert any(is_agent(p) for p in seen)
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    assert proc.returncode == 2  # pytest's "interrupted"
    journaled = journal_records(mesh_out)
    mesh = load_mesh(mesh_out)
    assert mesh["run"]["interrupted"] is True
    measured = {(src, dst) for src, dst, _, _ in entries(mesh)}
    assert measured == {(r["src"], r["dst"]) for r in journaled}
    assert 2 <= len(measured) < 6
    exported = json.loads((pytester.path / "export.json").read_text())   # written after the interrupt too
    assert [(e["client"], e["server"]) for e in exported] == [(src, dst) for src, dst, _, _ in entries(mesh)]
    assert (mesh_out / "latest" / "report.html").stat().st_size > 0   # the report is written after Ctrl-C too
    assert alive(seen) == [], f"left behind: {alive(seen)}"
    assert [p for p in descendants(proc.pid)] == []


def test_own_parametrization_keeps_every_variant(pytester, mesh_out):
    pytester.makepyfile(test_mesh="""
        import pytest

        @pytest.mark.parametrize("streams", [1, 2])
        @pytest.mark.meshperf(duration=1)
        def test_tcp(mesh_pair, measure, streams):
            measure(parallel=streams)
    """)
    result = pytester.runpytest_subprocess("--mesh-out", str(mesh_out), "--cluster", "local:2")
    result.assert_outcomes(passed=4)
    mesh = load_mesh(mesh_out)
    found = {(src, dst, key): entry["params"]["parallel"] for src, dst, key, entry in entries(mesh)}
    assert found == {(src, dst, f"test_mesh.py::test_tcp[{n}]"): n
                     for src, dst in (("node1", "node2"), ("node2", "node1")) for n in (1, 2)}
