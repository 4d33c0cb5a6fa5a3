"""User mistakes end as pytest usage errors (exit 4): one line, the culprit named, no traceback."""

import shutil

import pytest

from support.paths import SUITES
from support.usage import MESH_TEST, assert_usage_error


@pytest.mark.parametrize("args, fragments", [
    (["--mesh-threshold", "throughput>=fast"], ["--mesh-threshold", "throughput>=fast"]),
    (["--mesh-threshold", "thruput>=1Gbit/s"], ["thruput", "did you mean", "throughput"]),
    (["--mesh-threshold", "throughput>=5ms"], ["ms", "rate"]),
    (["--mesh-threshold", "jitter=1ms"], ["jitter=1ms"]),
    (["--mesh-duration", "soon"], ["duration", "soon"]),
    (["--mesh-bitrate", "1ms"], ["bitrate"]),
    (["--mesh-instances", "many"], ["instances='many'", "auto"]),
    (["--mesh-instances", "0"], ["instances=0", "auto"]),
    (["--mesh-schedule", "bursty"], ["--mesh-schedule 'bursty'", "rounds, sequential, burst, incast:NODE"]),
    (["--mesh-schedule", "incast"], ["incast", "name the receiving node", "incast:node1"]),
    (["--mesh-schedule", "incast:node9"], ["incast:node9", "no node 'node9'", "node1, node2, node3"]),
    (["--mesh-links", "node1"], ["--mesh-links 'node1'", "SRC->DST", "node1->*"]),
    (["--mesh-links", "node1->*,nod3->node1"], ["--mesh-links 'nod3->node1'", "'nod3' matches no node",
                                                "node1, node2, node3"]),
    (["--local-netserver", "no/netserver"], ["--local-netserver no/netserver", "no such file",
                                              "netserver binary on this machine"]),
    (["--local-netperf", "nope"], ["--local-netperf nope", "no such file"]),
    (["--mesh-retest", "11"], ["--mesh-retest 11", "from 0 (off) to 10"]),
    (["--mesh-retest", "-1"], ["--mesh-retest -1", "from 0 (off) to 10"]),
])
def test_bad_options(pytester, args, fragments):
    pytester.makepyfile(MESH_TEST.format(mark="duration=1"))
    assert_usage_error(pytester.runpytest_subprocess(*args), *fragments)


def test_bad_option_type_is_argparse_usage_error(pytester):
    result = pytester.runpytest_subprocess("--mesh-parallel", "many")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*argument --mesh-parallel: invalid int value: 'many'*"])


@pytest.mark.parametrize("mark, fragments", [
    ("duraton=1", ["unknown parameter 'duraton'", "did you mean 'duration'"]),
    ("duration=-1", ["duration"]),
    ("duration='500ms'", ["duration='500ms'", "whole seconds"]),
    ("parallel=0", ["parallel"]),
    ("instances='all'", ["instances='all'", "auto"]),
    ("tool='nc'", ["unknown tool", "iperf3"]),
    ("reverse=True, bidir=True", ["reverse and bidir"]),
    ("thresholds=['loss<=lots']", ["loss<=lots"]),
    ("profile='missing.yaml'", ["missing.yaml", "cannot read profile"]),
])
def test_bad_marks(pytester, mark, fragments):
    pytester.makepyfile(MESH_TEST.format(mark=mark))
    assert_usage_error(pytester.runpytest_subprocess(), *fragments)


@pytest.mark.parametrize("profile, fragments", [
    ("tool: iperf3\nthresholds:\n  - throughput >= 1Gbit/s\n  - jiter <= 1ms\n",
     ["prof.yaml:4", "jiter", "did you mean"]),
    ("tool: iperf3\nduraton: 3\n", ["prof.yaml:2", "duraton", "did you mean 'duration'"]),
    ("tool: [iperf3\n", ["prof.yaml:", "YAML syntax error"]),
    ("- just\n- a list\n", ["prof.yaml:1", "mapping"]),
    # read by yamlfile.YamlDocument, like hosts.yaml: a repeated key is refused, not silently the last one
    ("tool: iperf3\nduration: 3\nduration: 30\n", ["prof.yaml:3: profile: key 'duration' is given twice "
                                                  "(first at line 2); keep only one of them"]),
    ("thresholds:\n  throughput: '>= 1Gbit/s'\n  throughput: '<= 2Gbit/s'\n",
     ["prof.yaml:3: thresholds: key 'throughput' is given twice (first at line 2)"]),
])
def test_bad_profiles(pytester, profile, fragments):
    pytester.makepyfile(MESH_TEST.format(mark="profile='prof.yaml'"))
    pytester.path.joinpath("prof.yaml").write_text(profile)
    assert_usage_error(pytester.runpytest_subprocess(), *fragments)


def test_fixtures_are_documented(pytester):
    pytester.makepyfile(MESH_TEST.format(mark="duration=1"))
    result = pytester.runpytest_subprocess("--fixtures")
    # Each with its doc; pytest lists a plugin's fixtures in the order of "file:line" as text, so not in a fixed order.
    result.stdout.fnmatch_lines(["mesh_pair*", "*directed pair*"])
    result.stdout.fnmatch_lines(["measure*", "*measure(**overrides)*"])


def test_collect_only_starts_nothing_and_writes_nothing(pytester, mesh_out):
    pytester.makepyfile(MESH_TEST.format(mark="duration=1"))
    result = pytester.runpytest_subprocess("--collect-only", "-q", "--mesh-out", str(mesh_out))
    result.stdout.fnmatch_lines(["*test_link?node1->node2?", "*6 tests collected*"])
    assert not mesh_out.exists()


@pytest.mark.alone
def test_shipped_suites_pass_on_the_embedded_cluster(pytester, mesh_out):
    for name in ("test_tcp.py", "test_udp.py"):   # their profiles (tcp, udp) are meshperf's shipped ones
        shutil.copy(SUITES / name, pytester.path / name)
    result = pytester.runpytest_subprocess("--mesh-out", str(mesh_out), "--mesh-duration", "1")
    result.assert_outcomes(passed=12)
    result.stdout.fnmatch_lines(["*test_tcp.py::test_tcp_throughput: throughput*",
                                 "*test_udp.py::test_udp_jitter_loss: throughput*"])
