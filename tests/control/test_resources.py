"""The controller raises its open-files limit, within the hard limit, before it opens a large mesh's tunnels."""

import json
import resource
import subprocess
import sys

import pytest

CHILD = """
import json, resource, sys
from pytest_meshperf.control.resources import raise_open_files_limit
soft, wanted = int(sys.argv[1]), int(sys.argv[2])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
first = raise_open_files_limit(wanted)
again = raise_open_files_limit(wanted)
print(json.dumps({"first": first, "again": again, "now": resource.getrlimit(resource.RLIMIT_NOFILE)}))
"""
HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
needs_room = pytest.mark.skipif(HARD != resource.RLIM_INFINITY and HARD < 4096,
                                reason=f"the hard open-files limit ({HARD}) leaves no room to raise")


def run(soft, wanted):
    proc = subprocess.run([sys.executable, "-c", CHILD, str(soft), str(wanted)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@needs_room
def test_a_low_soft_limit_is_raised_to_what_is_wanted():
    result = run(256, 4096)
    assert result["first"] == [256, 4096]
    assert result["again"] == [4096, 4096]  # nothing more to do
    assert result["now"] == [4096, HARD]


@needs_room
def test_the_hard_limit_caps_it_and_nothing_is_lowered():
    if HARD != resource.RLIM_INFINITY:
        assert run(256, HARD + 1000)["now"] == [HARD, HARD]
    result = run(4096, 1024)
    assert result["first"] == [4096, 4096] and result["now"] == [4096, HARD]
