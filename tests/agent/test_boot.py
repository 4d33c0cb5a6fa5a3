"""agent/boot.py, the first thing a node runs: it runs as bare source (``python3 -I -S -c SOURCE``), so it
imports nothing of the package and keeps its own copy of what it needs to know about the tools."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_meshperf.agent import boot
from pytest_meshperf.tools import TOOLS

BOOT_SOURCE = Path(boot.__file__).read_text()


def test_boot_imports_nothing_of_the_package():
    imported = set()
    for node in ast.walk(ast.parse(BOOT_SOURCE)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert not [name for name in imported if name.startswith("pytest_meshperf")], imported


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_boot_knows_each_tool_as_the_tool_module_does(name):
    tool = TOOLS[name]
    assert boot.VERSION_PATTERNS[name] == tool.VERSION_PATTERN
    assert [tool.version_argv("x")[0]] + boot.VERSION_ARGS.get(name, ["--version"]) == tool.version_argv("x")


def run_boot(*args):
    """The boot source as deploy runs it: bare, isolated, without site."""
    return subprocess.run([sys.executable, "-I", "-S", "-c", BOOT_SOURCE] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, text=True)


def test_probe_reports_each_tool_and_its_version():
    result = run_boot("--probe", "--tool", "iperf3=iperf3", "--tool", "netperf=netperf")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout.splitlines()[0])
    for name, info in data["tools"].items():
        assert TOOLS[name].parse_version(info["version_output"]), info
    assert boot.tools_usable(data)


def test_a_tool_that_prints_no_version_is_not_usable(tmp_path):
    # /bin/true runs and exits 0 but is no iperf3: the node cannot measure, and boot says so
    result = run_boot("--tool", "iperf3=/bin/true", "--log", str(tmp_path / "log" / "agent.log"))
    assert result.returncode == boot.CANNOT_RUN, (result.stdout, result.stderr)
    data = json.loads(result.stdout.splitlines()[0])
    assert data["tools"]["iperf3"]["path"] == "/bin/true"
    assert not boot.tools_usable(data)
    assert not (tmp_path / "log").exists()  # nothing started, nothing created


def test_a_launch_from_a_relative_remote_dir_leaves_the_bytecode_cache_for_the_next_start(tmp_path):
    """The launch as a node runs it with the default remote dir (relative to the home directory): the launcher
    hands the bundle over as a real path, ``--expect`` names it relatively; the first start must still unpack
    the bundle's compiled copy (lib-*), which later starts import from (~80 ms less per start)."""
    import psutil

    from pytest_meshperf.agent import protocol
    from pytest_meshperf.transport import bundle
    from pytest_meshperf.transport.commands import LAUNCH_SCRIPT

    shipped = bundle.build()
    remote = tmp_path / "home" / ".meshperf"
    path = remote / "agent" / shipped.version_dir / "agent.pyz"
    path.parent.mkdir(parents=True, mode=0o700)
    path.write_bytes(shipped.data)
    relative = path.relative_to(tmp_path / "home").as_posix()
    argv = [sys.executable, "-I", "-S", "-c", LAUNCH_SCRIPT, ".meshperf", relative, shipped.sha256,
            "--expect", f"{relative}={shipped.sha256}", "--node", "n1", "--listen", "127.0.0.1", "--lease", "30",
            "--daemon", "--log", ".meshperf/logs/agent.log", "--tool", "iperf3=iperf3"]
    for start in ("first", "second"):
        result = subprocess.run(argv, cwd=tmp_path / "home", input=protocol.node_key("s" * 64, "n1") + "\n",
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, text=True)
        assert result.returncode == 0, (start, result.stdout, result.stderr)
        agent = psutil.Process(json.loads(result.stdout.splitlines()[-1])["pid"])
        agent.terminate()
        agent.wait(30)
        (lib,) = path.parent.glob("lib-*")
        assert lib.name == f"lib-{shipped.sha256[:16]}"
        assert list(lib.rglob("server.*.pyc")), start  # compiled: no start after the first compiles the agent
