"""meshperf installed in a repository of other tests: inert unless a mesh test runs, settings in ini files,
a conftest's own ``--cluster`` left alone.  Every run here is a real pytest run (pytester subprocesses)."""

import ast
import glob
import json
import os
import re
import subprocess
import sys

import pytest

from support.meshcheck import iter_entries
from support.paths import ROOT
from support.usage import assert_usage_error

# A user's repository as it is: no ini key set behind its back (an explicit meshperf_diagnosis is a setting, and
# "-p no:meshperf" would warn of it as unknown).
pytestmark = pytest.mark.plugin_defaults

PLAIN_TESTS = """
import pytest

def test_ok():
    assert 1 + 1 == 2

def test_fails():
    assert 1 + 1 == 3

@pytest.mark.skip(reason="not today")
def test_skipped():
    pass

# ids that look like mesh links: still ordinary tests
@pytest.mark.parametrize("link", ["a", "b"], ids=["node1->node2", "a->b"])
def test_link_like(link):
    assert link in "ab"
"""

MESH_TEST = """
import pytest

@pytest.mark.meshperf(duration=1)
def test_tcp(mesh_pair, measure):
    measure()
"""


def outcome_lines(result):
    """The per-test outcome lines of a -rA -p no:randomly run, in order, without timings."""
    return sorted(line for line in result.stdout.lines if re.match(r"^(PASSED|FAILED|SKIPPED|ERROR) ", line))


def extra_lines(result, baseline):
    """Lines of ``result`` that the run without meshperf did not print (durations aside; pytest's own header
    lists the installed plugins, meshperf among them)."""
    def lines(run):
        return [re.sub(r"\[gw[0-9]+\]", "[gw]", re.sub(r" in [0-9.]+s", "", line)) for line in run.stdout.lines + run.stderr.lines
                if not line.startswith("plugins:") and not re.match(r"^[.sFE]+ +\[", line)]  # xdist's dots: any order
    seen = set(lines(baseline))
    return [line for line in lines(result) if line not in seen]


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_a_repository_of_plain_tests_runs_as_without_meshperf(pytester, xdist):
    pytester.makepyfile(test_plain=PLAIN_TESTS)
    pytester.makeini("[pytest]\n")
    without = pytester.runpytest_subprocess("-p", "no:meshperf", "-rA", *xdist)
    with_it = pytester.runpytest_subprocess("-rA", *xdist)
    assert with_it.ret == without.ret == 1
    with_it.assert_outcomes(passed=3, failed=1, skipped=1)
    assert outcome_lines(with_it) == outcome_lines(without)
    assert extra_lines(with_it, without) == []
    assert not (pytester.path / "meshperf-results").exists()


def test_a_test_with_a_link_like_id_that_does_not_use_mesh_pair_is_left_alone(pytester):
    pytester.makepyfile(test_plain=PLAIN_TESTS)
    result = pytester.runpytest_subprocess("-v", "-k", "link_like", "--cluster", "local:2")
    result.assert_outcomes(passed=2, deselected=3)
    assert [line for line in result.stdout.lines if "meshperf mesh" in line or "measurements:" in line] == []
    assert not (pytester.path / "meshperf-results").exists()


def netns_list():
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout


# alone: it compares the machine's namespaces before and after, which tests beside it change (a testbed of
# another test came and went during --help in CI).
@pytest.mark.alone
@pytest.mark.usefixtures("netns_required")
@pytest.mark.parametrize("args", [["--collect-only"], ["--markers"], ["--fixtures"], ["--help"]],
                         ids=["collect-only", "markers", "fixtures", "help"])
def test_a_netns_cluster_in_the_ini_file_builds_nothing_without_a_test_run(pytester, args):
    pytester.makepyfile(test_mesh=MESH_TEST)
    pytester.makeini("[pytest]\nmeshperf_cluster = netns:2\n")
    before = netns_list()
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    assert netns_list() == before
    assert not (pytester.path / "meshperf-results").exists()
    if args == ["--collect-only"]:   # collection still sees the testbed's node names
        result.stdout.fnmatch_lines(["*test_tcp[[]node1->node2[]]*", "*test_tcp[[]node2->node1[]]*"])


def test_importing_the_plugin_imports_no_ssh_stack(pytester):
    pytester.makepyfile(test_plain=PLAIN_TESTS, conftest="""
import sys

def pytest_sessionfinish(session):
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("paramiko", "fabric", "invoke", "cryptography"))
    print("SSH-STACK", loaded)
""")
    result = pytester.runpytest_subprocess("-s", "--cluster", "local:2")
    result.stdout.fnmatch_lines(["*SSH-STACK []"])
    code = "import sys, pytest_meshperf.plugin; print(sorted(m for m in sys.modules if m.startswith('paramiko')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60).stdout.strip() == "[]"


# What a run without mesh tests may import of meshperf: the hooks, the option table and the state holder.
STARTUP_MODULES = {"pytest_meshperf", "pytest_meshperf.errors", "pytest_meshperf.vocabulary", "pytest_meshperf.hookspecs",
                   "pytest_meshperf.plugin", "pytest_meshperf.session", "pytest_meshperf.session.fixtures",
                   "pytest_meshperf.session.lifecycle", "pytest_meshperf.session.mesh_items",
                   "pytest_meshperf.session.options", "pytest_meshperf.session.run_identity",
                   "pytest_meshperf.session.xdist_hooks"}   # registered when xdist is installed


def test_a_run_without_mesh_tests_imports_only_the_start_up_modules(pytester):
    # Measured by bench/guest_bench.py: each module more is start-up time of every pytest run in the repository.
    pytester.makepyfile(test_plain=PLAIN_TESTS, conftest="""
import sys

def pytest_sessionfinish(session):
    print("LOADED", sorted(m for m in sys.modules if m.startswith("pytest_meshperf")))
""")
    result = pytester.runpytest_subprocess("-s")
    found = re.search(r"LOADED (\[.*\])", result.stdout.str())
    assert found, result.stdout.str()
    loaded = set(ast.literal_eval(found.group(1)))
    assert "pytest_meshperf.plugin" in loaded and loaded - STARTUP_MODULES == set()


CONFTEST_WITH_CLUSTER = """
def pytest_addoption(parser):
    parser.addoption("--cluster", default="prod", help="the repository's own cluster")
"""


def test_a_conftest_with_its_own_cluster_option_still_runs(pytester, mesh_out):
    pytester.makeconftest(CONFTEST_WITH_CLUSTER)
    pytester.makepyfile(test_own="""
def test_own_cluster(request):
    assert request.config.getoption("cluster") == "staging"
""", test_mesh=MESH_TEST)
    result = pytester.runpytest_subprocess("--cluster", "staging", "--mesh-cluster", "local:2",
                                           "--mesh-out", str(mesh_out))
    result.assert_outcomes(passed=3)
    mesh = json.loads((mesh_out / "latest" / "mesh.json").read_text())
    assert mesh["cluster"]["spec"] == "local:2" and list(mesh["cluster"]["nodes"]) == ["node1", "node2"]
    helped = pytester.runpytest_subprocess("--help")
    helped.stdout.fnmatch_lines(["*--mesh-cluster=SPEC*", "*--cluster=CLUSTER*the repository's own cluster*"])
    # Without --mesh-cluster the repository's --cluster is its own: meshperf measures its default cluster.
    alone = pytester.runpytest_subprocess("--cluster", "staging", "--mesh-out", str(mesh_out), "-v")
    alone.assert_outcomes(passed=7)


def squeezed(expressions):
    return [expression.replace(" ", "") for expression in expressions]


def test_settings_from_pyproject_toml_are_used_and_the_command_line_wins(pytester, tmp_path):
    pytester.makepyfile(test_mesh=MESH_TEST.replace("(duration=1)", "()"))
    pytester.makefile(".toml", pyproject="""
[tool.pytest.ini_options]
meshperf_cluster = "local:2"
meshperf_duration = "1"
meshperf_out = "results-here"
meshperf_threshold = ["throughput>=1Mbit/s", "retransmits<=100000"]
meshperf_report = "no"
meshperf_links = ["node1->*"]
""")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1, deselected=1)
    run = pytester.path / "results-here" / "latest"
    assert not (run / "report.html").exists()
    mesh = json.loads((run / "mesh.json").read_text())
    assert mesh["run"]["parameters"]["cluster"] == "local:2"
    assert squeezed(mesh["run"]["parameters"]["thresholds"]) == ["throughput>=1Mbit/s", "retransmits<=100000"]
    ((src, dst, _, entry),) = list(iter_entries(mesh))
    assert (src, dst) == ("node1", "node2")
    assert squeezed(t["expression"] for t in entry["thresholds"]) == ["throughput>=1Mbit/s", "retransmits<=100000"]
    assert " -t 1 " in entry["instances"][0]["command"] + " "
    # The command line over the ini file.
    out = tmp_path / "cli-out"
    result = pytester.runpytest_subprocess("--mesh-out", str(out), "--mesh-links", "node2->node1",
                                           "--mesh-threshold", "throughput>=2Mbit/s")
    result.assert_outcomes(passed=1, deselected=1)
    mesh = json.loads((out / "latest" / "mesh.json").read_text())
    assert squeezed(mesh["run"]["parameters"]["thresholds"]) == ["throughput>=2Mbit/s"]
    ((src, dst, _, entry),) = list(iter_entries(mesh))
    assert (src, dst) == ("node2", "node1")
    assert squeezed(t["expression"] for t in entry["thresholds"]) == ["throughput>=2Mbit/s"]   # all of it


@pytest.mark.parametrize("line, fragments", [
    ("meshperf_parallel = lots", ["ini meshperf_parallel in tox.ini", "'lots' is not a whole number"]),
    ("meshperf_report = maybe", ["ini meshperf_report in tox.ini", "'maybe' is not one of yes, no"]),
    ("meshperf_threshold = throughput>=fast", ["ini meshperf_threshold in tox.ini", "throughput>=fast"]),
    ("meshperf_cluster = local:zero", ["ini meshperf_cluster in tox.ini", "local:zero"]),
    ("meshperf_schedule = sometimes", ["ini meshperf_schedule in tox.ini", "sometimes"]),
    ("meshperf_host_keys = trust-me", ["ini meshperf_host_keys in tox.ini", "trust-me"]),
], ids=["int", "choice", "threshold", "cluster", "schedule", "host-keys"])
def test_a_bad_ini_value_is_a_one_line_usage_error_naming_the_key_and_the_file(pytester, line, fragments):
    pytester.makepyfile(test_plain=PLAIN_TESTS)
    pytester.makefile(".ini", tox=f"[pytest]\n{line}\n")
    assert_usage_error(pytester.runpytest_subprocess(), *fragments)


def test_every_option_has_an_ini_key_named_as_its_destination(pytester):
    from pytest_meshperf.session.options import OPTIONS
    result = pytester.runpytest_subprocess("--help")
    text = result.stdout.str()
    for option in OPTIONS:
        assert option.dest.startswith("meshperf_")
        assert re.search(rf"^\s+{option.dest} \(", text, re.M), option.dest
        assert option.flag in text


def handoff_dirs(tmpdir):
    return glob.glob(os.path.join(tmpdir, "meshperf-xdist-*"))


def test_mesh_tests_beside_ordinary_ones_under_xdist(pytester, mesh_out, tmp_path, monkeypatch):
    pytester.makepyfile(test_plain=PLAIN_TESTS, test_mesh=MESH_TEST)
    # A temporary directory of this run's own: other pytest runs on the machine (meshperf's own tests run
    # in parallel) make and remove hand-off directories in the shared one meanwhile.
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    # --mesh-out as a separate word: pytest takes an existing path among the arguments into its rootdir, so
    # nothing may create it before every worker has collected (each would see other node ids).
    result = pytester.runpytest_subprocess("-n", "3", "--cluster", "local:3", "--mesh-out", str(mesh_out),
                                           "--deselect", "test_mesh.py::test_tcp[node3->node1]")
    result.assert_outcomes(passed=8, failed=1, skipped=1)   # (xdist does not count workers' deselections)
    mesh = json.loads((mesh_out / "latest" / "mesh.json").read_text())
    assert len(list(iter_entries(mesh))) == 5
    assert handoff_dirs(private_tmp) == []   # the workers' hand-off directory is gone with the run


def test_the_readme_documents_every_ini_key_in_one_table():

    from pytest_meshperf.session.options import OPTIONS
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| option | ini key | meaning |"):]
    table = table[:table.index("\n\n")]
    keys = [line.split(" | ")[1].strip("`") for line in table.splitlines()[2:]]
    assert sorted(keys) == sorted(option.dest for option in OPTIONS)
