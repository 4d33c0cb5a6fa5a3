"""--mesh-export FILE and `meshperf export`: netperf-orchestrate's flat list, from a real run's mesh.json."""

import datetime
import json
import subprocess
import sys
from importlib import resources

from jsonschema import Draft202012Validator

from pytest_meshperf.reports.cells import cell_detail
from pytest_meshperf.results.export import MESHPERF_KEYS, SPEC_KEYS

from support.meshcheck import iter_entries, validate_mesh_file
from support.usage import assert_usage_error

TESTS = """
import pytest

@pytest.mark.meshperf(duration=1, instances=2)
def test_two_instances(mesh_pair, measure):
    measure()

@pytest.mark.meshperf(duration=1, congestion="bogus")
def test_error(mesh_pair, measure):
    measure()
"""


def export_schema():
    text = resources.files("pytest_meshperf").joinpath("schema/export.schema.json").read_text(encoding="utf-8")
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def seconds(start, end):
    parse = datetime.datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


def test_export_has_the_spec_structure_and_matches_mesh_json(pytester, mesh_out):
    pytester.makepyfile(test_mesh=TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cluster", "local:2", "--mesh-out",
                                           str(mesh_out), "--mesh-export", "out/export.json")
    assert_usage_error(result, "--mesh-export out/export.json", "does not exist")   # checked before measuring
    (pytester.path / "out").mkdir()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cluster", "local:2", "--mesh-out",
                                           str(mesh_out), "--mesh-export", "out/export.json")
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(["export: */out/export.json (6 entries)"])
    mesh = validate_mesh_file(str(mesh_out / "latest" / "mesh.json"))
    exported = json.loads((pytester.path / "out" / "export.json").read_text())
    assert sorted(export_schema().iter_errors(exported), key=str) == []
    assert all(list(entry) == list(SPEC_KEYS + MESHPERF_KEYS) for entry in exported)

    # One entry per instance of every measurement, in mesh.json's order: 2 pairs x (2 instances + 1 error).
    expected = [(src, dst, test, inst) for src, dst, test, entry in iter_entries(mesh)
                for inst in entry["instances"] or [None]]
    assert len(expected) == 6
    assert [(e["client"], e["server"], e["test"]) for e in exported] == [x[:3] for x in expected]
    nodes = mesh["cluster"]["nodes"]
    for entry, (src, dst, test, inst) in zip(exported, expected):
        assert entry["client_address"] == nodes[src]["data_address"]
        assert entry["server_address"] == nodes[dst]["data_address"]
        measured = mesh["sources"][src]["destinations"][dst]["tests"][test]
        assert entry["status"] == measured["status"] and entry["error"] == measured["error"]
        if inst is None:
            # iperf3 ran and rejected the congestion algorithm: mesh.json keeps what the client did,
            # and the export has its command, exit code, time and output, as netperf-orchestrate's would.
            client = measured["client"]
            assert test.endswith("test_error") and entry["success"] is False and entry["instance"] is None
            assert "congestion" in entry["error"].lower()
            assert "-C bogus" in client["command"] and client["pid"] > 0 and client["signal"] is None
            assert isinstance(client["exit_code"], int) and not client["timed_out"]
            assert "TCP_CONGESTION" in json.loads(client["stdout"])["error"]
            assert entry["command"] == client["command"] and entry["exit_code"] == client["exit_code"]
            assert entry["stdout"] == client["stdout"]
            assert abs(entry["elapsed_time"] - seconds(client["started"], client["ended"])) < 0.001
            # The report shows it in the cell's details.
            rows = dict(cell_detail(src, dst, test, measured, {}))["Failed client"]
            assert ("command", client["command"], "mono") in rows and rows[1][0] == "ended"
            assert any(name == "stdout" and "TCP_CONGESTION" in text for name, text, _ in rows)
        else:
            assert entry["success"] is True and entry["instance"] == inst["instance"]
            assert entry["exit_code"] == inst["exit_code"] == 0
            assert entry["command"] == inst["command"] and entry["command"].startswith(("iperf3 ", "/"))
            assert json.loads(entry["stdout"]) == inst["raw"]
            assert abs(entry["elapsed_time"] - seconds(inst["start"], inst["end"])) < 0.001

    # The sub-command writes the same list from the run directory.
    cli = subprocess.run([sys.executable, "-m", "pytest_meshperf.cli", "export", str(mesh_out),
                          str(pytester.path / "again.json")], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert json.loads((pytester.path / "again.json").read_text()) == exported


BLOCKED = """
import os
import pytest

@pytest.mark.meshperf(duration=1)
def test_link(mesh_pair, measure):
    measure()

def test_zz_export_path_taken():
    os.makedirs("out/export.json/taken")   # the export cannot replace a directory at session end
"""


def test_an_export_that_cannot_be_written_loses_nothing(pytester, mesh_out):
    (pytester.path / "out").mkdir()
    pytester.makepyfile(test_mesh=BLOCKED)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cluster", "local:2", "--mesh-out",
                                           str(mesh_out), "--mesh-export", "out/export.json")
    result.assert_outcomes(passed=3)
    assert result.ret == 0
    text = result.stdout.str()
    assert "Traceback" not in text and "INTERNALERROR" not in text
    result.stdout.fnmatch_lines(["meshperf: cannot write the export */out/export.json: *; mesh.json has every "
                                 "measurement (meshperf export *mesh.json FILE writes it again)"])
    mesh = validate_mesh_file(str(mesh_out / "latest" / "mesh.json"))
    assert len(list(iter_entries(mesh))) == 2
    assert [p.name for p in (pytester.path / "out").iterdir()] == ["export.json"]   # no temporary file left
