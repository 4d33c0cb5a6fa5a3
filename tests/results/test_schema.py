"""mesh.schema.json: real result files follow it, broken ones do not, and it keeps up with the code."""

import dataclasses
import json
import re

import pytest
from jsonschema import Draft202012Validator

from pytest_meshperf.results.layout import CSV_METRICS, SCHEMA_VERSION
from pytest_meshperf.spec.metrics import METRICS
from pytest_meshperf.spec.params import Params
from pytest_meshperf.spec.thresholds import OPS

from support.meshcheck import (
    consistency_errors,
    load_schema,
    load_strict,
    schema_errors,
    validate_mesh_csv,
    validate_mesh_file,
)
from support.paths import ROOT

TCP_TEST = """
import pytest

@pytest.mark.meshperf(duration=1)
def test_tcp(mesh_pair, measure):
    measure()
"""

ERROR_TEST = """
@pytest.mark.meshperf(duration=1, congestion="no_such_algorithm")
def test_bad_congestion(mesh_pair, measure):
    measure()   # iperf3 refuses the algorithm: a measurement error
"""


def entries(doc):
    for src, source in doc["sources"].items():
        for dst, destination in source["destinations"].items():
            for key, entry in destination["tests"].items():
                yield src, dst, key, entry


def validated_run(out):
    path = out / "latest" / "mesh.json"
    doc = validate_mesh_file(str(path))
    validate_mesh_csv(str(out / "latest" / "mesh.csv"), doc)
    return doc


# --- real runs -----------------------------------------------------------------


def test_real_run_with_passed_and_error_entries_follows_schema(pytester, tmp_path):
    pytester.makepyfile(test_mesh=TCP_TEST + ERROR_TEST)
    out = tmp_path / "results"
    result = pytester.runpytest_subprocess("--mesh-out", str(out), "--cluster", "local:2")
    result.assert_outcomes(passed=2, errors=2)
    doc = validated_run(out)
    assert doc["run"]["interrupted"] is False and doc["run"]["exit_status"] == 1
    statuses = {(src, dst, key): entry["status"] for src, dst, key, entry in entries(doc)}
    assert statuses == {
        ("node1", "node2", "test_mesh.py::test_bad_congestion"): "error",
        ("node1", "node2", "test_mesh.py::test_tcp"): "passed",
        ("node2", "node1", "test_mesh.py::test_bad_congestion"): "error",
        ("node2", "node1", "test_mesh.py::test_tcp"): "passed",
    }
    for _, _, _, entry in entries(doc):
        if entry["status"] == "error":
            assert "congestion" in entry["error"] and entry["instances"] == []
        else:
            assert entry["instances"][0]["raw"]["end"]["sum_received"]["bits_per_second"] > 0


def test_real_run_with_failed_entries_follows_schema(pytester, tmp_path):
    pytester.makepyfile(test_mesh=TCP_TEST)
    out = tmp_path / "results"
    result = pytester.runpytest_subprocess("--mesh-out", str(out), "--cluster", "local:2",
                                           "--mesh-threshold", "throughput>=100Tbit/s")
    result.assert_outcomes(failed=2)
    doc = validated_run(out)
    assert doc["run"]["parameters"]["thresholds"] == ["throughput>=100Tbit/s"]
    found = list(entries(doc))
    assert [entry["status"] for _, _, _, entry in found] == ["failed", "failed"]
    for _, _, _, entry in found:
        (threshold,) = entry["thresholds"]
        assert threshold["passed"] is False and threshold["value"] == 100e12 and threshold["unit"] == "Tbit/s"


# --- the schema rejects broken documents -----------------------------------------


def _threshold(passed, measured=2.2e10):
    return {"expression": "throughput >= 100Mbit/s", "metric": "throughput_bps", "op": ">=", "value": 1e8,
            "unit": "Mbit/s", "origin": "suites/tcp.yaml:8", "measured": measured, "passed": passed,
            "message": "throughput 22000 Mbit/s >= 100 Mbit/s (suites/tcp.yaml:8)"}


def _entry(status="passed"):
    metrics = {"throughput_bps": 2.2e10, "retransmits": 9.0, "cpu_local_percent": 44.6}
    entry = {
        "nodeid": "suites/test_tcp.py::test_tcp_throughput[node1->node2]", "tool": "iperf3",
        "params": Params(duration_s=2.0).to_dict(), "status": status, "metrics": metrics,
        "instances": [{
            "instance": 1, "pid": 8150, "client_port": 50683, "server_port": 5201,
            "start": "2026-11-22T04:03:31.353186Z", "end": "2026-11-22T04:03:33.381289Z",
            "command": "/usr/bin/iperf3 -c 127.0.0.12 -p 5201 -J -t 2 -B 127.0.0.11", "metrics": dict(metrics),
            "raw": {"start": {"version": "iperf 3.12"}, "intervals": [], "end": {"anything": [1, "goes", None]}},
            "server": {"pid": 8149, "port": 5201, "command": "/usr/bin/iperf3 -s -1 -J -p 5201 -B 127.0.0.12",
                       "exit_code": 0, "raw": {"start": {}, "end": {}}},
        }],
        "thresholds": [_threshold(True)], "error": None, "tool_version": "3.12",
        "started": "2026-11-22T04:03:31.066313Z", "finished": "2026-11-22T04:03:33.418157Z",
        "name": "test_tcp_throughput",
    }
    if status == "failed":
        entry["thresholds"] = [_threshold(False, 5e7)]
    if status == "error":
        entry.update(metrics={}, instances=[], tool_version=None, error="iperf3: the server is busy",
                     thresholds=[_threshold(None, None)])
    return entry


def _node(n):
    return {"address": f"127.0.0.1{n}", "data_address": f"127.0.0.1{n}", "role": "both", "labels": {},
            "agent": {"version": "0.1.0", "pid": 8126, "hostname": "vm"},
            "tools": {"iperf3": {"version": "3.12", "path": "/usr/bin/iperf3", "error": None}},
            "resources": {"cpu_count": 2, "psutil": True, "memory_total_bytes": 25276063744}}


def good_doc():
    return {
        "meshperf_version": "0.1.0", "schema_version": 1,
        "run": {"id": "20261122T040331Z-d9ae", "started": "2026-11-22T04:03:31.033499Z",
                "finished": "2026-11-22T04:03:56.679972Z", "interrupted": False, "exit_status": 1,
                "parameters": {"cluster": "local:2", "options": {"duration_s": 1.0}, "thresholds": []},
                "command_line": ["pytest", "suites/"], "meshperf_version": "0.1.0"},
        "cluster": {"kind": "local", "spec": "local:2", "source": None, "nodes": {"node1": _node(1), "node2": _node(2)}},
        "sources": {
            "node1": {"destinations": {"node2": {"tests": {"t.py::test_a": _entry("passed"),
                                                           "t.py::test_a#2": _entry("failed")}}}},
            "node2": {"destinations": {"node1": {"tests": {"t.py::test_a": _entry("error")}}}},
        },
    }


def _entry_at(doc, src="node1", key="t.py::test_a"):
    dst = next(iter(doc["sources"][src]["destinations"]))
    return doc["sources"][src]["destinations"][dst]["tests"][key]


def _set(path, value):
    def mutate(doc):
        *parents, last = path
        node = doc
        for part in parents:
            node = node[part]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value
    return mutate


def _entry_change(src, key, **changes):
    def mutate(doc):
        entry = _entry_at(doc, src, key)
        for name, value in changes.items():
            if value is KeyError:
                del entry[name]
            else:
                entry[name] = value
    return mutate


BROKEN = {
    "missing run": _set(["run"], KeyError),
    "missing sources": _set(["sources"], KeyError),
    "unknown top-level key": _set(["extra"], 1),
    "schema_version 2": _set(["schema_version"], 2),
    "run.interrupted missing": _set(["run", "interrupted"], KeyError),
    "run.interrupted not a boolean": _set(["run", "interrupted"], "yes"),
    "run.finished null": _set(["run", "finished"], None),
    "run.started not ISO 8601": _set(["run", "started"], "22/11/2026 04:03"),
    "run.id malformed": _set(["run", "id"], "run-1"),
    "unknown run option": _set(["run", "parameters", "options", "speed"], 1),
    "cluster kind unknown": _set(["cluster", "kind"], "cloud"),
    "node role unknown": _set(["cluster", "nodes", "node1", "role"], "router"),
    "node without address": _set(["cluster", "nodes", "node1", "address"], KeyError),
    "agent without tools": _set(["cluster", "nodes", "node1", "tools"], KeyError),
    "label not a string": _set(["cluster", "nodes", "node1", "labels"], {"rack": 3}),
    "bad status": _entry_change("node1", "t.py::test_a", status="ok"),
    "status missing": _entry_change("node1", "t.py::test_a", status=KeyError),
    "error entry with error null": _entry_change("node2", "t.py::test_a", error=None),
    "error entry without error key": _entry_change("node2", "t.py::test_a", error=KeyError),
    "error entry with empty error": _entry_change("node2", "t.py::test_a", error=""),
    "error entry with a passed threshold": _entry_change("node2", "t.py::test_a", thresholds=[_threshold(True)]),
    "passed entry without instances": _entry_change("node1", "t.py::test_a", instances=[]),
    "passed entry with an error": _entry_change("node1", "t.py::test_a", error="boom"),
    "passed entry with a violated threshold": _entry_change("node1", "t.py::test_a", thresholds=[_threshold(False)]),
    "failed entry without a violated threshold": _entry_change("node1", "t.py::test_a#2",
                                                               thresholds=[_threshold(True)]),
    "failed entry without instances": _entry_change("node1", "t.py::test_a#2", instances=[]),
    "unknown entry key": _entry_change("node1", "t.py::test_a", verdict="passed"),
    "entry without nodeid": _entry_change("node1", "t.py::test_a", nodeid=KeyError),
    "metric not a number": _entry_change("node1", "t.py::test_a", metrics={"throughput_bps": "22 Gbit/s"}),
    "extra metric not a number": _entry_change("node1", "t.py::test_a", metrics={"my_metric": None}),
    "entry started not ISO 8601": _entry_change("node1", "t.py::test_a", started=1795320211.0),
    "unknown param": _entry_change("node1", "t.py::test_a",
                                   params=dict(Params().to_dict(), speed=1)),
    "param missing": _entry_change("node1", "t.py::test_a",
                                   params={k: v for k, v in Params().to_dict().items() if k != "udp"}),
    "threshold metric is an alias": _entry_change(
        "node1", "t.py::test_a", thresholds=[dict(_threshold(True), metric="throughput")]),
    "threshold op unknown": _entry_change("node1", "t.py::test_a", thresholds=[dict(_threshold(True), op="=>")]),
    "threshold passed not boolean": _entry_change("node1", "t.py::test_a",
                                                  thresholds=[dict(_threshold(True), passed="yes")]),
    "threshold without message": _entry_change(
        "node1", "t.py::test_a", thresholds=[{k: v for k, v in _threshold(True).items() if k != "message"}]),
}


def _instance_change(**changes):
    def mutate(doc):
        instance = _entry_at(doc)["instances"][0]
        for name, value in changes.items():
            if value is KeyError:
                del instance[name]
            else:
                instance[name] = value
    return mutate


BROKEN.update({
    "instance raw not an object": _instance_change(raw="iperf3 output"),
    "instance without raw": _instance_change(raw=KeyError),
    "instance without command": _instance_change(command=KeyError),
    "instance number 0": _instance_change(instance=0),
    "instance port out of range": _instance_change(server_port=70000),
    "instance unknown key": _instance_change(cpu_mask="0x3"),
    "server half filled": _instance_change(server={"pid": 1}),
    "server unknown key": _instance_change(server=dict(_entry()["instances"][0]["server"], stderr="")),
})


def test_hand_written_document_is_valid():
    assert schema_errors(good_doc()) == []


def test_tool_output_is_not_constrained():
    doc = good_doc()
    instance = _entry_at(doc)["instances"][0]
    instance["raw"] = {"start": {"future_field": {"x": [1.5, None, True]}}, "whatever": "tool 3.99 prints"}
    instance["server"]["raw"] = {"unparsed": "iperf3: error - something"}
    assert schema_errors(doc) == []
    instance["server"] = {}  # the server's result could not be collected
    instance["metrics"]["some_new_metric"] = 1.5  # extra numeric metrics are allowed
    assert schema_errors(doc) == []


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_schema_rejects_broken_document(name):
    doc = good_doc()
    BROKEN[name](doc)
    assert schema_errors(doc), f"the schema accepted a document with: {name}"


def test_validate_mesh_file_reports_every_problem(tmp_path):
    run_dir = tmp_path / "20261122T040331Z-d9ae"
    run_dir.mkdir()
    doc = good_doc()
    del doc["run"]
    _entry_at(doc)["status"] = "ok"
    doc["sources"]["node9"] = {"destinations": {"node9": {"tests": {}}}}
    path = run_dir / "mesh.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(AssertionError) as info:
        validate_mesh_file(str(path))
    text = str(info.value)
    assert "'run' is a required property" in text
    assert "'ok' is not one of ['passed', 'failed', 'error']" in text
    assert "sources/node9: not a node of cluster.nodes" in text
    assert "a node measured against itself" in text


def test_validate_mesh_file_rejects_non_strict_json(tmp_path):
    run_dir = tmp_path / "20261122T040331Z-d9ae"
    run_dir.mkdir()
    doc = good_doc()
    _entry_at(doc)["metrics"]["jitter_ms"] = float("nan")
    path = run_dir / "mesh.json"
    path.write_text(json.dumps(doc))  # Python writes NaN, which is not JSON
    with pytest.raises(ValueError, match="not strict JSON: NaN"):
        load_strict(str(path))
    with pytest.raises(ValueError, match="not strict JSON"):
        validate_mesh_file(str(path))


def test_validate_mesh_file_checks_run_directory(tmp_path):
    run_dir = tmp_path / "20261122T000000Z-0000"
    run_dir.mkdir()
    (run_dir / "mesh.json").write_text(json.dumps(good_doc()))
    with pytest.raises(AssertionError, match="run/id: '20261122T040331Z-d9ae', but the file is in run directory"):
        validate_mesh_file(str(run_dir / "mesh.json"))


# --- the schema keeps up with the code ------------------------------------------


def test_schema_is_valid_draft_2020_12_with_descriptions():
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == "https://meshperf.dev/schema/mesh-1.json"
    assert schema["title"]
    missing = []

    def walk(node, where):
        if isinstance(node, dict):
            for name, sub in (node.get("properties") or {}).items():
                conditional = any(part in ("if", "then", "else") for part in where.split("/"))
                if not conditional and "description" not in sub:
                    missing.append(f"{where}/properties/{name}")
            for key, sub in node.items():
                walk(sub, f"{where}/{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{where}/{i}")

    walk(schema, "#")
    assert missing == []


def test_schema_matches_the_code():
    defs = load_schema()["$defs"]
    assert load_schema()["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    assert defs["threshold"]["properties"]["metric"]["enum"] == list(METRICS)
    assert defs["threshold"]["properties"]["op"]["enum"] == list(OPS)
    assert set(METRICS) <= set(defs["metrics"]["properties"])
    assert set(CSV_METRICS) == set(METRICS)
    fields = [f.name for f in dataclasses.fields(Params)]
    assert sorted(defs["paramFields"]["properties"]) == sorted(fields)
    # Keys added with netperf are written always but not required: files written before stay valid.
    since_netperf = {"test", "request_size", "response_size", "selectors", "args", "test_args"}
    assert sorted(defs["entry"]["properties"]["params"]["required"]) == sorted(set(fields) - since_netperf)


def test_example_in_docs_follows_schema():
    text = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    section = text.split("## A real example", 1)[1]
    example = json.loads(re.search(r"```json\n(.*?)```", section, re.DOTALL).group(1))
    assert schema_errors(example) == [] and consistency_errors(example) == []
    (entry,) = [e for _, _, _, e in entries(example)]
    assert entry["status"] == "passed" and entry["instances"][0]["raw"]["end"]["sum_received"]
