"""Diagnosis on a real 6-host netns testbed at 200 Mbit/s: a slow sender, a slow receiver, a slow rack uplink, one
slow link, each found as one finding; re-tests confirm a lasting fault and call a passing one flaky.

The shaping is real (htb on each node's eth0, testbed/shaping.py) and changed between cases; each case is one
pytest run of its own (pytester subprocess), thresholds as a user writes them.
"""

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from pytest_meshperf.reports import browser

from support.commands import document, meshperf
from support.meshcheck import iter_entries, validate_mesh_file
from support.report_dom import ReportDom, chromium  # noqa: F401 (a fixture)
from support.testbed_fixtures import make_testbed_fixture, needs_netns

pytestmark = [needs_netns, pytest.mark.plugin_defaults, pytest.mark.alone]   # findings follow measured figures

NODES = [f"node{i}" for i in range(1, 7)]
RATE, SLOW = "200mbit", "50mbit"
testbed = make_testbed_fixture(nodes=6, rates=RATE)

SUITE = """
import pytest

@pytest.mark.meshperf(duration=1, thresholds=["throughput>=150Mbit/s"])
def test_tcp(mesh_pair, measure):
    measure()
"""


@pytest.fixture
def tb(testbed):
    """The testbed with every node at RATE and no link shaped, before and after each case."""
    def reset():
        for node in NODES:
            testbed.unshape(node)
            testbed.shape(node, RATE)
    reset()
    yield testbed
    reset()


def run(pytester, tb, out, *args, hosts=None, suite=SUITE):
    pytester.makepyfile(test_mesh=suite)
    return pytester.runpytest_subprocess("--cluster", hosts or tb.hosts_yaml, "--ssh-known-hosts", tb.known_hosts,
                                         "--mesh-out", str(out), "-p", "no:cacheprovider",
                                         "--junitxml", str(Path(out) / "junit.xml"), *args)


def results(out):
    doc = validate_mesh_file(str(Path(out) / "latest" / "mesh.json"))
    return doc, {(src, dst): entry for src, dst, _, entry in iter_entries(doc)}


def titles(doc):
    return sorted(f"{f['kind']} {f['subject']}" for f in doc["diagnosis"])


def junit_cases(out):
    root = ET.parse(Path(out) / "junit.xml").getroot()
    return {case.get("name"): case for case in root.iter("testcase")}


def outgoing(node):
    return {f"{node}->{other}" for other in NODES if other != node}


def incoming(node):
    return {f"{other}->{node}" for other in NODES if other != node}


def test_a_slow_sender_is_one_finding_confirmed_by_retest(pytester, tmp_path, tb, chromium):
    tb.shape("node3", SLOW)
    result = run(pytester, tb, tmp_path, "--mesh-retest", "1")
    doc, entries = results(tmp_path)
    failed = {f"{s}->{d}" for (s, d), e in entries.items() if e["status"] == "failed"}
    assert failed == outgoing("node3"), failed
    assert titles(doc) == ["sender node3"], doc["diagnosis"]
    (finding,) = doc["diagnosis"]
    assert finding["status"] == "failed" and set(finding["links"]) == outgoing("node3")
    assert sorted(finding["explains"]) == sorted(entries[tuple(link.split("->"))]["nodeid"] for link in outgoing("node3"))
    # the re-test: each link again, and node3 to a fresh destination: still slow, so every link is confirmed
    assert finding["retest"]["outcome"] == "confirmed" and finding["retest"]["confirmed"] == 5, finding["retest"]
    for link in outgoing("node3"):
        part = entries[tuple(link.split("->"))]["diagnosis"]
        assert part["retest"] == "confirmed" and {r["role"] for r in part["retests"]} == {"repeat", "probe"}
    retest_lines = list((Path(tmp_path) / "latest" / "retest").glob("*.jsonl"))
    assert retest_lines and sum(len(p.read_text().splitlines()) for p in retest_lines) == 10   # 5 repeats, 5 probes
    # pytest: the 5 pair tests and the one diagnosis case fail; nothing else
    result.assert_outcomes(passed=25, failed=6)
    result.stdout.fnmatch_lines(["diagnosis: 1 finding (1 failed)", "  FAILED sender node3 *node3 sends poorly*"])
    assert "not explained by a finding" not in result.stdout.str()
    cases = junit_cases(tmp_path)
    case = cases["diagnosis[sender node3]"]
    assert case.get("classname") == cases["test_tcp[node3->node1]"].get("classname") + ".test_tcp"
    assert case.find("failure") is not None
    assert "node3 sends poorly" in case.find("failure").get("message")
    # meshperf summary says the same from mesh.json, in text and in its --json document
    summary = meshperf("summary", tmp_path / "latest")
    assert "diagnosis: 1 finding (1 failed)" in summary.stdout and "FAILED sender node3" in summary.stdout
    assert [f["subject"] for f in document(meshperf("summary", "--json", tmp_path / "latest"), "summary")[
        "diagnosis"]] == ["node3"]
    # the report outlines node3's row and nothing else
    dom = ReportDom(browser.dump_dom(str(Path(tmp_path) / "latest" / "report.html")))
    framed = {f"{s}->{d}" for (s, d), cell in dom.heatmaps["t0"].items() if "finding" in cell["class"].split()}
    assert framed == outgoing("node3"), framed
    assert {dom.heatmaps["t0"][tuple(link.split("->"))]["finding"] for link in framed} == {"sender node3"}


def test_a_slow_receiver_is_one_finding(pytester, tmp_path, tb):
    for src in NODES[:4] + NODES[5:]:
        tb.shape_link(src, "node5", SLOW)
    run(pytester, tb, tmp_path)
    doc, _ = results(tmp_path)
    assert titles(doc) == ["receiver node5"], doc["diagnosis"]
    assert set(doc["diagnosis"][0]["links"]) == incoming("node5")


def test_slow_links_between_racks_are_one_group_finding(pytester, tmp_path, tb):
    racks = {n: "a" if n in NODES[:3] else "b" for n in NODES}
    for src in NODES:
        for dst in NODES:
            if src != dst and racks[src] != racks[dst]:
                tb.shape_link(src, dst, "100mbit")
    inventory = yaml.safe_load(Path(tb.hosts_yaml).read_text())
    for host in inventory["hosts"]:
        host["labels"]["rack"] = racks[host["name"]]
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(yaml.safe_dump(inventory))
    run(pytester, tb, tmp_path / "out", hosts=str(hosts))
    doc, _ = results(tmp_path / "out")
    assert titles(doc) == ["group rack=a"], doc["diagnosis"]
    cross = {f"{s}->{d}" for s in NODES for d in NODES if racks[s] != racks[d]}
    assert set(doc["diagnosis"][0]["links"]) == cross


def test_one_slow_link_is_one_link_finding(pytester, tmp_path, tb):
    tb.shape_link("node1", "node2", SLOW)
    run(pytester, tb, tmp_path)
    doc, _ = results(tmp_path)
    assert titles(doc) == ["link node1->node2"], doc["diagnosis"]


FIRST_PASS_ONLY = SUITE + """
import subprocess

NETNS = {netns!r}

@pytest.fixture(autouse=True)
def _disturbed_once(request):
    yield
    if request.node.callspec.params["mesh_pair"].id == "node1->node2":
        # node1's egress is unshaped once node1->node2 was measured: its re-test finds the link fine
        subprocess.run(["tc", "-n", NETNS, "qdisc", "del", "dev", "eth0", "root"], check=True)
"""


def test_a_link_disturbed_only_in_the_first_pass_ends_flaky(pytester, tmp_path, tb):
    tb.shape_link("node1", "node2", SLOW)
    run(pytester, tb, tmp_path, "--mesh-retest", "1", suite=FIRST_PASS_ONLY.format(netns=tb.node("node1").netns))
    doc, entries = results(tmp_path)
    assert entries[("node1", "node2")]["status"] == "failed"
    assert titles(doc) == ["link node1->node2"], doc["diagnosis"]
    (finding,) = doc["diagnosis"]
    assert finding["retest"]["outcome"] == "flaky", finding["retest"]
    assert entries[("node1", "node2")]["diagnosis"]["retest"] == "flaky"
