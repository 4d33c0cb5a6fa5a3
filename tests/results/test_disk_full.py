"""A results directory that fills up mid-run (a real tmpfs of 2 MiB): one error line and no traceback, the agents
stopped, every measurement before the disk filled in the journal, a non-zero exit, and `meshperf assemble`
writing mesh.json from that journal once there is room."""

import os
import subprocess
import sys

import psutil
import pytest

from support.procs import is_agent, is_tool, journal_records

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")

# The pair test that finishes {when}th fills the results' file system: the next record cannot be written (or,
# after the last one, mesh.json).
SUITE = """
import os
import pytest

done = []

@pytest.mark.meshperf(duration=1)
def test_tcp(mesh_pair, measure):
    measure()
    done.append(mesh_pair.id)
    if len(done) == {when}:
        with open(os.path.join({out!r}, "filler"), "wb", buffering=0) as handle:
            try:
                while True:   # bounded by the 2 MiB file system
                    handle.write(b"x" * 65536)
            except OSError:
                pass
"""


@pytest.fixture
def tiny(tmp_path):
    mount = tmp_path / "results"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("when, kept, says", [(2, 2, "cannot write the journal"), (6, 6, "cannot write mesh.json")],
                         ids=["mid-run", "at the end"])
def test_a_full_disk_stops_the_run_with_one_line_and_keeps_what_was_measured(pytester, tiny, when, kept, says):
    pytester.makepyfile(test_mesh=SUITE.format(out=str(tiny), when=when))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cluster", "local:3", "--mesh-out", str(tiny),
                                           "--mesh-progress", "-1")
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == 1, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if "No space left on device" in line]
    assert len(errors) == 1, output
    assert says in errors[0] and "meshperf assemble" in errors[0], errors[0]
    # Everything measured before the disk filled is in the journal, each record whole.
    records = journal_records(tiny)
    assert len(records) == kept and all(r["status"] == "passed" for r in records), records
    # Nothing left running: no agent, no tool of this run.
    left = [p for p in psutil.process_iter() if (is_agent(p) or is_tool(p)) and str(tiny) in " ".join(_cmdline(p))]
    assert left == []
    # Once there is room, the journal gives mesh.json.
    os.unlink(tiny / "filler")
    run = os.path.realpath(tiny / "latest")
    assembled = subprocess.run([sys.executable, "-m", "pytest_meshperf.cli", "assemble", run], capture_output=True,
                               text=True, timeout=120)
    assert assembled.returncode == 0, assembled.stdout + assembled.stderr
    assert os.path.exists(os.path.join(run, "mesh.json"))


def _cmdline(proc):
    try:
        return proc.cmdline()
    except psutil.Error:
        return []
