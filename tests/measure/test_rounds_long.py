"""rounds with long flows: a pipelined round's servers start while the round before it runs, so they must
live through that round as well as their own (at T >= 28 s they were stopped at 1.1 T + 25 s, mid-flow, and
every pair after the first round was an error: "the server has terminated")."""

from pathlib import Path

from support.meshcheck import iter_entries, validate_mesh_file

# Paced (20 Mbit/s): three loopback flows for a minute cost little CPU beside the other tests.
SUITE = """
import pytest

@pytest.mark.meshperf(duration=30, bitrate="20Mbit/s")
def test_tcp(mesh_pair, measure):
    measure()
"""


def test_a_pipelined_round_of_30_s_flows_keeps_its_servers_until_its_flows_end(pytester, tmp_path):
    pytester.makepyfile(test_mesh=SUITE)
    out = tmp_path / "out"
    result = pytester.runpytest_subprocess("--cluster", "local:3", "--mesh-out", str(out), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)   # local:3: two rounds of three pairs
    doc = validate_mesh_file(str(Path(out) / "latest" / "mesh.json"))
    entries = [entry for _, _, _, entry in iter_entries(doc)]
    assert sorted((e["round"], e["group"].get("pipelined", False)) for e in entries) == \
        [(1, False)] * 3 + [(2, True)] * 3   # the second round's servers started during the first
    assert all(e["status"] == "passed" and e["instances"][0]["server"]["exit_code"] == 0 for e in entries)
