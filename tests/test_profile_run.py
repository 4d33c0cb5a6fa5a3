"""--mesh-profile NAME|PATH: a profile run on its own (no test module), and as the lowest layer of given tests.

Real pytest runs (pytester subprocesses) with real agents and iperf3 on the embedded cluster.
"""

import shutil
from pathlib import Path

from meshcheck import iter_entries, validate_mesh_file
from test_usage import MESH_TEST, assert_usage_error

PROFILES = Path(__file__).resolve().parent.parent / "suites" / "profiles"

NOT_A_MESH_TEST = """
def test_must_not_run():
    raise AssertionError("a profile run on its own collects only the profile")
"""


def shipped_profile(pytester, name="tcp"):
    folder = pytester.path / "suites" / "profiles"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROFILES / (name + ".yaml"), folder / (name + ".yaml"))


def test_profile_runs_on_its_own_with_xdist(pytester, mesh_out):
    shipped_profile(pytester)
    pytester.makepyfile(test_other=NOT_A_MESH_TEST)   # in the invocation dir: must not be collected
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--mesh-profile", "tcp", "--cluster", "local:2",
                                           "--mesh-duration", "1", "--mesh-out", str(mesh_out), "-n", "2")
    result.assert_outcomes(passed=2)
    mesh = validate_mesh_file(str(mesh_out / "latest" / "mesh.json"))
    assert mesh["run"]["parameters"]["profile"] == "suites/profiles/tcp.yaml"
    entries = {(src, dst, test): entry for src, dst, test, entry in iter_entries(mesh)}
    assert set(entries) == {("node1", "node2", "suites/profiles/tcp.yaml::tcp"),
                            ("node2", "node1", "suites/profiles/tcp.yaml::tcp")}
    for entry in entries.values():
        assert entry["nodeid"].startswith("suites/profiles/tcp.yaml::tcp[node")
        assert entry["tool"] == "iperf3" and entry["params"]["duration_s"] == 1   # --mesh-duration over the profile
        assert [t["origin"] for t in entry["thresholds"]] == ["suites/profiles/tcp.yaml:8"]


def test_profile_path_alone_collects_one_test_per_pair(pytester):
    (pytester.path / "lab").mkdir()
    (pytester.path / "lab" / "quick-tcp.yaml").write_text("tool: iperf3\nduration: 1\n")
    pytester.makepyfile(test_other=NOT_A_MESH_TEST)
    result = pytester.runpytest_subprocess("--mesh-profile", "lab/quick-tcp.yaml", "--cluster", "local:3",
                                           "--collect-only", "-q")
    result.stdout.fnmatch_lines(["lab/quick-tcp.yaml::quick-tcp?node1->node2?", "*6 tests collected*"])
    assert "test_must_not_run" not in result.stdout.str()


def test_with_test_paths_the_profile_is_the_lowest_layer(pytester, mesh_out):
    (pytester.path / "strict.yaml").write_text("tool: iperf3\nduration: 3\nthresholds:\n  - throughput >= 1000Tbit/s\n")
    pytester.makepyfile(test_mesh=MESH_TEST.format(mark="duration=1"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_mesh.py", "--mesh-profile", "strict.yaml",
                                           "--cluster", "local:2", "--mesh-out", str(mesh_out))
    result.assert_outcomes(failed=2)   # the profile's threshold applies to the given tests
    mesh = validate_mesh_file(str(mesh_out / "latest" / "mesh.json"))
    tests = {test for _, _, test, _ in iter_entries(mesh)}
    assert tests == {"test_mesh.py::test_link"}                 # no profile test added
    for _, _, _, entry in iter_entries(mesh):
        assert entry["params"]["duration_s"] == 1                # the mark wins over the profile
        assert entry["thresholds"][0]["origin"] == "strict.yaml:4" and entry["thresholds"][0]["passed"] is False


def test_profile_mistakes_are_usage_errors(pytester):
    shipped_profile(pytester, "tcp")
    shipped_profile(pytester, "udp")
    assert_usage_error(pytester.runpytest_subprocess("--mesh-profile", "tpc"),
                       "--mesh-profile tpc: no profile of that name", "searched %s" % (pytester.path / "suites" /
                                                                                         "profiles"), "tcp, udp")
    assert_usage_error(pytester.runpytest_subprocess("--mesh-profile", "lab/none.yaml"),
                       "--mesh-profile lab/none.yaml: no such file")
    (pytester.path / "bad.yaml").write_text("tool: iperf3\nduraton: 2\n")
    assert_usage_error(pytester.runpytest_subprocess("--mesh-profile", "bad.yaml"),
                       "bad.yaml:2", "did you mean 'duration'")
