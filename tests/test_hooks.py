"""The hooks meshperf calls for users' own result stores (hookspecs.py), in real runs on the embedded cluster."""

import json
from pathlib import Path

import pytest

from support.meshcheck import iter_entries

STORE = """
import json, os

def pytest_meshperf_measurement(config, record):
    with open(os.environ["STORE"], "a") as handle:
        handle.write(json.dumps({"hook": "measurement", "pid": os.getpid(), "src": record["src"],
                                 "dst": record["dst"], "test": record["test"],
                                 "throughput_bps": record["metrics"].get("throughput_bps")}) + "\\n")
    if os.environ.get("BREAK"):
        raise RuntimeError("the store is down")

def pytest_meshperf_results(config, mesh_path, counts):
    with open(os.environ["STORE"], "a") as handle:
        handle.write(json.dumps({"hook": "results", "mesh_path": mesh_path, "counts": counts}) + "\\n")
"""

MESH_TEST = """
import pytest

@pytest.mark.meshperf(duration=1)
def test_tcp(mesh_pair, measure):
    measure()
"""


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_every_measurement_and_the_result_file_reach_a_users_hooks(pytester, mesh_out, tmp_path, monkeypatch, xdist):
    store = tmp_path / "store.jsonl"
    monkeypatch.setenv("STORE", str(store))
    pytester.makeconftest(STORE)
    pytester.makepyfile(test_mesh=MESH_TEST)
    result = pytester.runpytest_subprocess("--cluster", "local:3", "--mesh-out", str(mesh_out), *xdist)
    result.assert_outcomes(passed=6)
    calls = [json.loads(line) for line in store.read_text().splitlines()]
    measured = [c for c in calls if c["hook"] == "measurement"]
    (results,) = [c for c in calls if c["hook"] == "results"]
    mesh = json.loads((mesh_out / "latest" / "mesh.json").read_text())
    assert Path(results["mesh_path"]).resolve() == (mesh_out / "latest" / "mesh.json").resolve()
    assert results["counts"]["passed"] == 6
    entries = {(src, dst): entry for src, dst, _, entry in iter_entries(mesh)}
    assert {(c["src"], c["dst"]) for c in measured} == set(entries) and len(measured) == 6
    for call in measured:
        assert call["throughput_bps"] == entries[(call["src"], call["dst"])]["metrics"]["throughput_bps"]
    if xdist:   # measured by the workers, each in its own process
        assert len({c["pid"] for c in measured}) == 2


def test_a_hook_that_fails_is_a_warning_and_loses_nothing(pytester, mesh_out, tmp_path, monkeypatch):
    monkeypatch.setenv("STORE", str(tmp_path / "store.jsonl"))
    monkeypatch.setenv("BREAK", "1")
    pytester.makeconftest(STORE)
    pytester.makepyfile(test_mesh=MESH_TEST)
    result = pytester.runpytest_subprocess("--cluster", "local:2", "--mesh-out", str(mesh_out), "-W",
                                           "always::pytest.PytestWarning")
    result.assert_outcomes(passed=2, warnings=2)
    result.stdout.fnmatch_lines(["*meshperf: hook pytest_meshperf_measurement raised RuntimeError: the store is down*"])
    mesh = json.loads((mesh_out / "latest" / "mesh.json").read_text())
    assert len(list(iter_entries(mesh))) == 2
