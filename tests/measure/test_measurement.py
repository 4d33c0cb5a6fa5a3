"""Measurement.as_dict: what dataclasses.asdict gives, without deep-copying the tools' raw output, and
without letting to_record rewrite the measurement it came from."""

import dataclasses
import json

from pytest_meshperf.errors import ClientRun
from pytest_meshperf.measure.measurement import Instance, Measurement

from support.paths import RECORDED_MESH


def recorded_raw():
    """A real iperf3 client output, from the recorded run (tests/data/report/README.md says how it was made)."""
    with open(RECORDED_MESH) as handle:
        doc = json.load(handle)
    for source in doc["sources"].values():
        for destination in source["destinations"].values():
            for entry in destination["tests"].values():
                if entry["instances"]:
                    return entry["instances"][0]["raw"]
    raise AssertionError("the recorded mesh has no instance")


def measurement():
    raw = recorded_raw()
    inst = Instance(instance=1, pid=10, client_port=40000, server_port=5201, start=1796179053.5, end=1796179055.5,
                    command="iperf3 -c ...", metrics={"throughput_bps": 9.4e8}, raw=raw,
                    server={"pid": 11, "raw": {"end": {}}})
    return Measurement(src="node1", dst="node2", test="t.py::test_tcp", nodeid="t.py::test_tcp[node1->node2]",
                       tool="iperf3", params={"duration_s": 2}, metrics={"throughput_bps": 9.4e8}, instances=[inst],
                       round=1, started=1796179053.4, finished=1796179055.6,
                       group={"schedule": "rounds", "start_at": 1796179053.5, "phases_s": {"lead": 0.03}},
                       client=ClientRun(command="iperf3 -c ...", pid=10, exit_code=1, signal=None, timed_out=False,
                                        stdout="", stderr="iperf3: error", started=1796179053.5, ended=1796179055.5))


def test_as_dict_is_asdict_without_the_deep_copy():
    m = measurement()
    shallow = m.as_dict()
    assert shallow == dataclasses.asdict(m)
    assert shallow["instances"][0]["raw"] is m.instances[0].raw  # shared, not copied


def test_to_record_leaves_the_measurement_as_it_was():
    m = measurement()
    before = dataclasses.asdict(m)
    record = m.to_record()
    assert record["group"]["start_at"].endswith("Z") and record["instances"][0]["start"].endswith("Z")
    assert dataclasses.asdict(m) == before
