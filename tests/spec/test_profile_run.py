"""--mesh-profile NAME|PATH: a profile run on its own (no test module), and as the lowest layer of given tests.

Real pytest runs (pytester subprocesses) with real agents and iperf3 on the embedded cluster.
"""

import shutil
import subprocess
import sys
import zipfile

import pytest

from support.meshcheck import iter_entries, validate_mesh_file
from support.paths import PROFILES, ROOT
from support.usage import MESH_TEST, assert_usage_error

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
                                                                                         "profiles"), "pytest_meshperf/data/profiles", "tcp, udp")
    assert_usage_error(pytester.runpytest_subprocess("--mesh-profile", "lab/none.yaml"),
                       "--mesh-profile lab/none.yaml: no such file")
    (pytester.path / "bad.yaml").write_text("tool: iperf3\nduraton: 2\n")
    assert_usage_error(pytester.runpytest_subprocess("--mesh-profile", "bad.yaml"),
                       "bad.yaml:2", "did you mean 'duration'")


@pytest.mark.alone
def test_shipped_profiles_are_found_from_any_directory_and_the_users_own_wins(pytester, mesh_out):
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_other=NOT_A_MESH_TEST)   # no suites/profiles here: the shipped latency profile runs
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--mesh-profile", "latency", "--cluster",
                                           "local:2", "--mesh-duration", "1", f"--mesh-out={mesh_out}")
    result.assert_outcomes(passed=2)
    mesh = validate_mesh_file(str(mesh_out / "latest" / "mesh.json"))
    assert mesh["run"]["parameters"]["profile"] == "meshperf:profiles/latency.yaml"
    for _, _, test, entry in iter_entries(mesh):
        assert test == "meshperf:profiles/latency.yaml::latency" and entry["tool"] == "netperf"
        assert entry["thresholds"][0]["origin"].startswith("meshperf:profiles/latency.yaml:")
    # A profile of the same name in the user's suites/profiles/ wins; a mark names one the same way.
    own = pytester.path / "suites" / "profiles"
    own.mkdir(parents=True)
    (own / "latency.yaml").write_text("tool: iperf3\nduration: 1\n")
    pytester.makepyfile(test_other="""
import pytest

@pytest.mark.meshperf(profile="latency")
def test_mine(mesh_pair, measure):
    measure()

@pytest.mark.meshperf(profile="udp")
def test_shipped(mesh_pair, measure):
    measure()
""")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cluster", "local:2", "--mesh-duration", "1",
                                           f"--mesh-out={mesh_out}")
    result.assert_outcomes(passed=4)
    mesh = validate_mesh_file(str(mesh_out / "latest" / "mesh.json"))
    tools = {test: entry["tool"] for _, _, test, entry in iter_entries(mesh)}
    assert tools == {"test_other.py::test_mine": "iperf3", "test_other.py::test_shipped": "iperf3"}
    udp = [entry for _, _, test, entry in iter_entries(mesh) if test.endswith("test_shipped")]
    assert all(entry["params"]["udp"] is True for entry in udp)


def test_the_shipped_profiles_are_in_the_wheel(tmp_path):
    """A plain ``pip install`` has them: they are package data, not files of this checkout."""
    root = tmp_path / "src"   # a copy: building in the checkout would leave build/ and *.egg-info there
    shutil.copytree(ROOT / "pytest_meshperf", root / "pytest_meshperf",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, root / name)
    # pip builds it as scripts/setup installs it: setuptools from the package registry, in isolation.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(root)],
                   check=True, timeout=300, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("pytest_meshperf-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("tcp", "udp", "latency", "throughput"):
        assert f"pytest_meshperf/data/profiles/{name}.yaml" in names
